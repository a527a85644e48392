"""The shipped references (results/<name>/, README "Results") are what the analysis code makes of
their records today: regenerating each report from its shipped runs gives the shipped text, so the
analysis cannot drift from what the README shows without this failing."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from analysis.collect import collect
from analysis.compare import Comparison
from analysis.report import main as report_main
from analysis.report import make_report
from tests.helpers import ROOT

SHIPPED = sorted(p.parent.parent for p in (ROOT / "results").glob("*/report/report.md"))
TEXT = ("*.md", "*.tex", "*.csv")  # the figures are PNGs drawn from the same numbers


def test_the_readme_references_are_shipped():
    names = {p.name for p in SHIPPED}
    assert "reference_2d" in names, f"results/reference_2d is not shipped (found: {sorted(names)})"
    readme = (ROOT / "README.md").read_text()
    for name in names:
        assert f"results/{name}/report/report.md" in readme, f"README does not link results/{name}"


def documented_report_args(reference: Path) -> list[str]:
    """The options of the reference's own `make figures SWEEP=results/<name> [ARGS="..."]` command (its
    README's Commands): the shipped report is what that command makes, e.g. scored `--at 5000`."""
    found = re.search(rf'make figures SWEEP=results/{reference.name}(?: ARGS="([^"]*)")?', (reference / "README.md").read_text())
    assert found, f"results/{reference.name}/README.md names no `make figures SWEEP=results/{reference.name}` command"
    return shlex.split(found.group(1) or "")


@pytest.mark.slow
@pytest.mark.parametrize("reference", SHIPPED, ids=[p.name for p in SHIPPED])
def test_the_report_regenerated_from_the_shipped_records_is_the_shipped_one(reference, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the report names its input as `make figures SWEEP=results/<name>` does
    report_main([str(reference.relative_to(ROOT)), "--out", str(tmp_path), *documented_report_args(reference)])
    shipped = reference / "report"
    names = sorted(p.name for pattern in TEXT for p in shipped.glob(pattern))
    assert names == sorted(p.name for pattern in TEXT for p in tmp_path.glob(pattern))
    for name in names:
        assert (tmp_path / name).read_text() == (shipped / name).read_text(), f"{reference.name}/report/{name}"
    assert not list(reference.glob("runs/*/checkpoint.pt")), "a reference ships records, not weights"
    assert os.path.getsize(reference / "README.md") > 0


def _stability(values: dict, failed: str = "worst", status: dict | None = None):
    """ranking_over_training on hand-made records: values[(method, seed)] = {iteration: kl}."""
    from types import SimpleNamespace

    import pandas as pd

    from analysis.ranking import ranking_over_training
    runs = pd.DataFrame([{"run_dir": f"{m}-{s}", "method": m, "seed": s, "context": "ring8", "setting_label": "A",
                          "status": (status or {}).get((m, s), "completed")} for m, s in values])
    evals = pd.DataFrame([{"run_dir": f"{m}-{s}", "iteration": i, "metric": "mixture10k_kl", "value": v}
                          for (m, s), curve in values.items() for i, v in curve.items()])
    return ranking_over_training(SimpleNamespace(runs=runs, evals=evals, failed=failed), "mixture10k_kl")


def test_the_ranking_settles_where_it_stops_changing():
    # KL, lower is better: at 100 the order is the reverse of the final one, from 200 on it is the final one
    table = _stability({("a", 0): {100: 3.0, 200: 1.0, 300: 0.5}, ("b", 0): {100: 2.0, 200: 2.0, 300: 1.0},
                        ("c", 0): {100: 1.0, 200: 3.0, 300: 2.0}})
    assert list(table.spearman.round(6)) == [-1.0, 1.0, 1.0]
    assert set(table.settled_at) == {200}


def test_a_ranking_that_only_agrees_at_the_end_never_settled():
    table = _stability({("a", 0): {100: 3.0, 200: 3.0, 300: 0.5}, ("b", 0): {100: 2.0, 200: 2.0, 300: 1.0},
                        ("c", 0): {100: 1.0, 200: 1.0, 300: 2.0}})
    assert table.settled_at.isna().all()


def test_a_seed_that_diverged_counts_as_worst_in_the_ranking():
    # a's two seeds: one best at every point, one diverged after 100 (no value later): under failed=worst
    # a's mean is dragged to the worst value and a ranks last; under failed=exclude a ranks first
    curves = {("a", 0): {100: 0.1, 200: 0.1, 300: 0.1}, ("a", 1): {100: 0.1},
              ("b", 0): {100: 1.0, 200: 1.0, 300: 1.0}, ("c", 0): {100: 2.0, 200: 2.0, 300: 2.0}}
    worst = _stability(curves, status={("a", 1): "diverged"})
    exclude = _stability(curves, "exclude", status={("a", 1): "diverged"})
    # final under worst: b 1.0, a (0.1 + 2.0) / 2 = 1.05, c 2.0; at 100 a is first: ranks a,b swap
    assert worst.set_index("iteration").spearman.round(6).to_dict() == {100: 0.5, 200: 1.0, 300: 1.0}
    assert set(exclude.spearman.round(6)) == {1.0}


@pytest.mark.slow
def test_ship_copies_records_not_weights_and_its_report_regenerates(tmp_path, monkeypatch):
    from analysis.ship import ship
    from tests.helpers import run_cli
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "dataset=ring8", "regularizer=none,sn,wc", "setting=B", "seed=0,1", "budget=smoke",
                   "budget.iterations=4", "progress=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(sweep.glob("*/checkpoint.pt"))
    monkeypatch.chdir(tmp_path)
    out = ship(Path("sweep"), "tiny", ["make sweep ..."])
    assert out == Path("results/tiny")
    shipped = sorted(p.relative_to(out / "runs") for p in (out / "runs").rglob("*") if p.is_file())
    assert {p.name for p in shipped} == {"result.json", "metrics.jsonl", "spectra.json", "final.png"}
    # every run's records, but the sample images of the runs the report draws only: one seed per method
    drawn = Comparison(*collect([out])).drawn_runs()
    drawn = {Path(run).name for chosen in drawn.values() for run in chosen.values()}
    with_samples = {p.parts[0] for p in shipped if p.name == "final.png"}
    assert len(drawn) == 3 and with_samples == drawn
    assert len(shipped) == 6 * 3 + 3 and not list(out.rglob("*.pdf"))
    readme = (out / "README.md").read_text()
    assert "6 finished runs (6 completed)" in readme and "make sweep ..." in readme and "commit" in readme
    assert "those of the 3 runs the report draws" in readme
    regenerated = tmp_path / "again"
    make_report([out], regenerated)
    assert (regenerated / "report.md").read_text() == (out / "report" / "report.md").read_text()
    assert "make bench" not in (out / "report" / "claims.md").read_text()  # no bench: the runs' own times

    # with make bench's side-by-side timings shipped beside the records, the cost verdict reads them, the
    # regenerated report too; a later shipment without --bench keeps them
    from benchmark import bench
    bench.main(["--model", "mlp", "--regularizers", "sn,wn,wgangp", "--rounds", "1", "--out", "bench.json"])
    ship(Path("sweep"), "tiny", ["make sweep ..."], bench=Path("bench.json"))
    ship(Path("sweep"), "tiny", ["make sweep ..."])
    claims = (out / "report" / "claims.md").read_text()
    figure_10 = next(line for line in claims.splitlines() if line.startswith("| Figure 10"))
    assert "from make bench (" in figure_10, figure_10
    assert "cost measured side by side: [bench.json](bench.json) (make bench, mlp (2-D points)" in (out / "README.md").read_text()
    make_report([out], regenerated)
    for name in ("report.md", "claims.md"):
        assert (regenerated / name).read_text() == (out / "report" / name).read_text()


def test_make_figures_shows_the_shipped_reference_until_a_sweep_exists(tmp_path, monkeypatch):
    from analysis.sweep_status import default_sweep
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        default_sweep()
    (tmp_path / "results" / "reference_2d").mkdir(parents=True)
    assert default_sweep() == Path("results/reference_2d")
    (tmp_path / "multirun" / "local_grid").mkdir(parents=True)
    assert default_sweep() == Path("multirun/local_grid")
