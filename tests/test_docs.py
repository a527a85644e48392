"""The documentation holds together: every relative link and #anchor in README.md, docs/*.md and
results/*/README.md resolves, and every `make <target>` they name is a target of the Makefile.
Reads text only (no torch, no runs): a fraction of a second."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "results").glob("*/README.md")])

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
MAKE = re.compile(r"(?:^|[\s;&|(])make\s+((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)([A-Za-z0-9][A-Za-z0-9_.-]*)")


def split(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, code lines): lines inside fenced blocks are code, never headings or links."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (markup dropped), lowercase, punctuation dropped,
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)                         # inline HTML
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)                        # keeps letters, digits, _, -, spaces
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = split(page.read_text())
    found, seen = set(), {}
    for line in prose:
        found.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    prose, _ = split(page.read_text())
    text = "\n".join(CODE_SPAN.sub("", line) for line in prose)  # `[x](y)` in code is not a link
    return LINK.findall(text)


def make_targets() -> set[str]:
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*(?:\s+[A-Za-z0-9][A-Za-z0-9_.-]*)*)\s*:(?!=)", line)
        if m:
            targets.update(m.group(1).split())
    return targets


def make_commands(page: Path) -> list[str]:
    """The target of every `make ...` a page shows, in code blocks and in inline code."""
    prose, code = split(page.read_text())
    snippets = code + [span for line in prose for _, span in CODE_SPAN.findall(line)]
    return [m.group(2) for snippet in snippets for m in MAKE.finditer(snippet)]


def test_there_are_pages():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/README.md"} <= names, names


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        path, _, anchor = unquote(target).partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif ROOT not in (where, *where.parents):
            broken.append(f"{target}: outside the repository")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: no heading with anchor #{anchor} in {where.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_make_target_named_exists(page):
    targets = make_targets()
    unknown = sorted(set(make_commands(page)) - targets)
    assert not unknown, (f"{page.relative_to(ROOT)} names make target(s) {unknown} that the Makefile does not have "
                         f"(targets: {', '.join(sorted(targets))})")


def test_the_readme_shows_the_commands_a_newcomer_starts_with():
    readme = (ROOT / "README.md").read_text()
    for command in ("make test", "python benchmark/run.py", "make sweep", "make figures"):
        assert command in readme, command


def test_nothing_cites_a_file_outside_the_repository():
    """README.md and docs/ stand on their own (the references' READMEs are records of where they ran)."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in page.read_text().splitlines():
            assert not re.search(r"(?<![\w./-])(\.\./)+shared/|(?<![\w./-])shared/(DESIGN|PAPER)\.md", line), \
                f"{page.relative_to(ROOT)} cites a file outside the repository: {line.strip()}"


def test_every_page_the_code_cites_exists():
    """Code comments and conf files cite docs/<page>.md (and #anchors): each must be there."""
    cited = re.compile(r"docs/([\w.-]+\.md)(#[\w-]+)?")
    missing = []
    for folder in ("benchmark", "regularizers", "analysis", "tests", "conf", "scripts"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".yaml", ".sh") or path.name == "test_docs.py":
                continue
            for name, anchor in cited.findall(path.read_text(errors="replace")):
                page = ROOT / "docs" / name
                if not page.is_file():
                    missing.append(f"{path.relative_to(ROOT)}: docs/{name}")
                elif anchor and anchor[1:] not in anchors(page):
                    missing.append(f"{path.relative_to(ROOT)}: docs/{name}{anchor}")
    assert not missing, "cited but not there:\n  " + "\n  ".join(sorted(set(missing)))


def test_the_anchors_are_githubs():
    assert slug("The comparison's rules") == "the-comparisons-rules"
    assert slug("`make figures`: the report") == "make-figures-the-report"
    assert slug("Several methods on one D") == "several-methods-on-one-d"
    assert slug("2-D mixtures: [results/reference_2d](results/reference_2d/README.md)") == \
        "2-d-mixtures-resultsreference_2d"
    assert slug("Cost, speed & the fast path") == "cost-speed--the-fast-path"
