"""Numbers in prose come from the records: a page embeds a generated file (a reference's
report/summary.md, its claims.md) between two markers, and this module refreshes the copy.

    <!-- generated from results/reference_2d/report/summary.md -->
    ...the file's text, as generated...
    <!-- end generated -->

    python -m analysis.embed README.md docs/results.md     (after make figures regenerated the files)

tests/test_docs.py checks that every embedded copy equals its file, so a page cannot keep a number
the records no longer give.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from analysis.collect import write_atomic_text

BLOCK = re.compile(r"(<!-- generated from (?P<source>\S+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.DOTALL)


def embedded(page: Path) -> list[tuple[Path, str]]:
    """(source file, embedded text) of each generated block of `page`; sources are relative to the repository."""
    root = _root(page)
    return [(root / m.group("source"), m.group("body")) for m in BLOCK.finditer(page.read_text())]


def refresh(page: Path) -> bool:
    """Rewrite each block of `page` from its source file; whether anything changed."""
    root, text = _root(page), page.read_text()
    new = BLOCK.sub(lambda m: m.group(1) + (root / m.group("source")).read_text() + m.group(4), text)
    if new != text:
        write_atomic_text(page, new)
    return new != text


def _root(page: Path) -> Path:
    """The repository holding `page` (sources are named from its top, wherever the page sits)."""
    for folder in Path(page).resolve().parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    raise FileNotFoundError(f"{page} is not inside the regbench repository")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m analysis.embed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pages", nargs="+", type=Path)
    for page in p.parse_args(argv).pages:
        print(f"{page}: {'refreshed' if refresh(page) else 'up to date'}")


if __name__ == "__main__":
    main()
