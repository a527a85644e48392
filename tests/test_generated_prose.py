"""Numbers in prose come from the records: each page's generated blocks (analysis/embed.py) are exact
copies of the files the analysis wrote, and the README's results tables are such blocks."""
from __future__ import annotations

from pathlib import Path

import pytest

from analysis.embed import embedded, refresh
from tests.helpers import ROOT

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "results").glob("*/README.md")])
SHIPPED = sorted(p.parent.parent.name for p in (ROOT / "results").glob("*/report/summary.md"))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_embedded_block_is_its_generated_file(page):
    for source, body in embedded(page):
        assert source.is_file(), f"{page.name} embeds {source}, which does not exist"
        assert body == source.read_text(), (f"{page.relative_to(ROOT)}: its copy of {source.relative_to(ROOT)} is stale: "
                                            f"python -m analysis.embed {page.relative_to(ROOT)}")


def test_the_readme_shows_each_references_summary_as_generated():
    sources = {source.relative_to(ROOT).as_posix() for source, _ in embedded(ROOT / "README.md")}
    for name in SHIPPED:
        assert f"results/{name}/report/summary.md" in sources, f"README.md does not embed results/{name}'s summary"


def test_refresh_replaces_a_stale_copy_and_keeps_the_rest(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "table.md").write_text("| a | 1 |\n")
    page = tmp_path / "page.md"
    page.write_text("Before.\n<!-- generated from table.md -->\n| a | 0 |\n<!-- end generated -->\nAfter.\n")
    assert refresh(page)
    assert page.read_text() == "Before.\n<!-- generated from table.md -->\n| a | 1 |\n<!-- end generated -->\nAfter.\n"
    assert not refresh(page)
    assert [(s.name, b) for s, b in embedded(Path(page))] == [("table.md", "| a | 1 |\n")]
