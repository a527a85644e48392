import hashlib
import json
from pathlib import Path

import matplotlib.image
import nbformat
import pytest
from nbclient import NotebookClient

from analysis import figures as F
from analysis import report
from analysis.collect import SchemaError, collect
from analysis.compare import Comparison
from tests.helpers import ROOT, run_cli

# (regularizer, setting, seed) -> (status, fid5k_10k, is50k_10splits)
KNOWN = {
    ("sn", "A", 0): ("completed", 30.0, 7.0), ("sn", "A", 1): ("completed", 34.0, 7.4),
    ("sn", "D", 0): ("completed", 40.0, 6.0), ("sn", "D", 1): ("diverged", None, None),
    ("wn", "A", 0): ("completed", 50.0, 6.5), ("wn", "A", 1): ("completed", 52.0, 6.7),
    ("wn", "D", 0): ("completed", 45.0, 6.9), ("wn", "D", 1): ("completed", 47.0, 6.8),
    ("none", "A", 0): ("failed", None, None),
}


def write_run(sweep: Path, reg: str, setting: str, seed: int, status: str, fid, isc, extra_metrics=None) -> Path:
    run = sweep / f"regularizer={reg},seed={seed},setting={setting}"
    (run / ".hydra").mkdir(parents=True)
    config = {"dataset": {"name": "cifar10"}, "model": {"name": "cnn", "width": 1.0}, "loss": {"name": "ns"},
              "regularizer": {"name": reg}, "setting": {"name": setting, "lr": 1e-4, "beta1": 0.5, "beta2": 0.9,
                                                        "n_dis": 5}, "seed": seed, "batch_size": 64,
              "budget": {"iterations": 100000}}  # the paper's length: its Table 2 numbers apply
    (run / ".hydra" / "config.yaml").write_text(json.dumps(config))
    metrics = {} if fid is None else {"fid5k_10k": fid, "is50k_10splits": isc, "is50k_10splits_std": 0.1}
    metrics.update(extra_metrics or {})
    result = {"schema": 1, "status": status, "iteration": 100000, "iterations_planned": 100000, "config": config,
              "metrics": metrics, "seconds_per_generator_update": {"none": 1.0, "sn": 1.1, "wn": 1.05}[reg],
              "final": {"d_loss": 1.0, "g_loss": 1.0}, "spectral_norms": {"conv1": 1.0, "dense": 1.0},
              "error": "ValueError: boom" if status == "failed" else None}
    (run / "result.json").write_text(json.dumps(result))
    rows = [{"schema": 1, "iteration": i, "seconds": i / 10, "d_loss": 1.0, "g_loss": 1.0,
             "sigma_max": {"conv1": 1.0 + i / 1000, "dense": 1.0}} for i in (50, 100)]
    if metrics:
        rows.append({"schema": 1, "iteration": 100, "seconds": 10.0, "eval_seconds": 1.0, "metrics": metrics})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "spectra.json").write_text(json.dumps({"schema": 1, "iteration": 100, "singular_values": {
        "conv1": [1.0, 0.5, 0.25], "dense": [1.0]}}))
    return run


@pytest.fixture
def synthetic_sweep(tmp_path) -> Path:
    sweep = tmp_path / "sweep"
    for (reg, setting, seed), (status, fid, isc) in KNOWN.items():
        write_run(sweep, reg, setting, seed, status, fid, isc)
    # then made to look unfinished: progress logged, no result, nobody holds its lock (killed or preempted)
    stopped = write_run(sweep, "wn", "A", 2, "completed", None, None)
    (stopped / "result.json").unlink()
    (stopped / "spectra.json").unlink()
    (stopped / "metrics.jsonl").write_text(json.dumps({"schema": 1, "iteration": 10, "d_loss": 1.0}) + "\n")
    return sweep


def digest(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_table_numbers_equal_the_known_values(synthetic_sweep):
    runs, evals = collect([synthetic_sweep])
    assert runs.status.value_counts().to_dict() == {"completed": 7, "diverged": 1, "failed": 1, "stopped": 1}
    comparison = Comparison(runs, evals)
    table = F.best_setting_table(comparison, "fid5k_10k").set_index("method")
    # sn under D: seed 0 scored 40, seed 1 diverged and counts as the worst FID of the sweep (52): mean 46
    assert table.loc["sn", "setting"] == "A" and table.loc["sn", "mean"] == 32.0
    assert (table.loc["sn", "ci_low"], table.loc["sn", "ci_high"]) == (30.0, 34.0)  # bootstrap of two seeds
    assert table.loc["wn", "setting"] == "D" and table.loc["wn", "mean"] == 46.0
    assert table.loc["sn", "paper"] == 29.3 and table.loc["wn", "paper"] == 34.7  # SN paper Table 2, same protocol
    summary = comparison.summary("fid5k_10k").set_index(["method", "setting"])
    assert summary.loc[("sn", "D"), "mean"] == 46.0 and summary.loc[("sn", "D"), "diverged"] == 1
    assert summary.loc[("none", "A"), ["seeds", "failed", "n"]].tolist() == [1, 1, 1]
    assert summary.loc[("wn", "A"), ["seeds", "unfinished", "n"]].tolist() == [3, 1, 2]
    is_table = F.best_setting_table(comparison, "is50k_10splits").set_index("method")
    assert is_table.loc["sn", "mean"] == pytest.approx(7.2) and is_table.loc["sn", "paper"] == 7.42
    markdown = F.table_markdown(F.best_setting_table(comparison, "fid5k_10k"), "fid5k_10k", comparison)
    assert "| sn | A | 32 [30, 34] | 2 / 2 | 0 / 0 / 0 | 29.3 |" in markdown
    assert "95% percentile bootstrap" in markdown and "final evaluation" in markdown
    assert set(evals.metric) == {"fid5k_10k", "is50k_10splits", "is50k_10splits_std"}
    excluded = Comparison(runs, evals, failed="exclude").summary("fid5k_10k").set_index(["method", "setting"])
    assert excluded.loc[("sn", "D"), "mean"] == 40.0 and excluded.loc[("sn", "D"), "n"] == 1


def test_report_writes_every_figure_and_table_and_touches_no_run(synthetic_sweep, tmp_path):
    before = digest(synthetic_sweep)
    path = report.main([str(synthetic_sweep), "--out", str(tmp_path / "figures")])
    assert digest(synthetic_sweep) == before  # analysis never writes into run directories
    out = tmp_path / "figures"
    for name in ("settings_fid5k_10k", "settings_is50k_10splits", "curves_fid5k_10k", "spectra_final",
                 "sigma_max_training", "cost"):
        png = out / f"{name}.png"
        assert matplotlib.image.imread(png).size > 1000, name  # a real image, not an empty file
        assert (out / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert (out / "table2_fid5k_10k.tex").read_text().startswith(r"\begin{tabular}")
    text = path.read_text()
    assert "10 runs: 7 completed, 1 diverged, 1 failed, 1 stopped" in text
    assert "![fid5k_10k by setting](settings_fid5k_10k.png)" in text and "ValueError: boom" in text
    assert "## Paper claims" in text and (out / "claims.md").is_file()
    cost = F.relative_cost(collect([synthetic_sweep])[0]).set_index("regularizer").ratio_to_none
    assert cost["sn"] == pytest.approx(1.1) and cost["wn"] == pytest.approx(1.05)


def test_mixed_protocols_stay_apart_and_the_report_says_so(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep, "sn", "A", 0, "completed", 30.0, 7.0, {"fid50k_train": 20.0})
    path = report.main([str(sweep), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "settings_fid50k_train.png").exists()
    assert (tmp_path / "out" / "settings_fid5k_10k.png").exists()
    assert "Protocols are kept apart" in path.read_text() and "fid50k_train, fid5k_10k" in path.read_text()
    assert "No paper values" in (tmp_path / "out" / "table2_fid50k_train.md").read_text()


def test_bad_paths_and_unknown_schemas_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        report.main([str(tmp_path / "nowhere")])
    assert err.value.code == 2 and "does not exist: expected a sweep directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main([str(tmp_path)])
    assert "no run directories" in capsys.readouterr().err
    run = write_run(tmp_path / "old", "sn", "A", 0, "completed", 30.0, 7.0)
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps({**result, "schema": 0}))
    with pytest.raises(SchemaError, match="schema 0"):
        collect([tmp_path / "old"])


@pytest.fixture(scope="module")
def small_real_sweep(tmp_path_factory) -> Path:
    """A 2 x 2 grid of real smoke runs on the 2-D ring through Hydra multirun, as `make sweep` makes them."""
    root = tmp_path_factory.mktemp("real")
    proc = run_cli("-m", "dataset=ring8", "regularizer=none,sn", "setting=A,D", "budget=smoke", "budget.iterations=4",
                   "progress=false", f"hydra.sweep.dir={root / 'sweep'}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "sweep"


@pytest.mark.slow  # a Hydra multirun through the CLI (the fixture)
def test_report_from_a_real_sweep(small_real_sweep, tmp_path):
    path = report.main([str(small_real_sweep), "--out", str(tmp_path)])
    text = path.read_text()
    assert "4 runs: 4 completed" in text
    for metric in ("mixture10k_modes", "mixture10k_high_quality", "mixture10k_kl"):
        assert (tmp_path / f"settings_{metric}.png").stat().st_size > 1000
    assert matplotlib.image.imread(tmp_path / "samples.png").size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["comparison", "diagnostics"])
def test_notebooks_run_top_to_bottom_on_a_sweep(name, small_real_sweep):
    book = nbformat.read(ROOT / "analysis" / "notebooks" / f"{name}.ipynb", as_version=4)
    assert book.cells[1].source.startswith("# The sweep to analyse")
    book.cells[1].source = f'SWEEP = "{small_real_sweep}"'  # the first cell is the user's
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    images = [o for c in book.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the notebook drew no figure"
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_report_draws_the_timings_of_make_bench(synthetic_sweep, tmp_path):
    from benchmark import bench
    timings = tmp_path / "bench.json"
    bench.main(["--regularizers", "sn", "--width", "0.0625", "--batch", "8", "--n-dis", "1", "--rounds", "1",
                "--variant", "plain=speed.fused_adam=false", "--variant", "fused=speed.fused_adam=true",
                "--out", str(timings)])
    path = report.main([str(synthetic_sweep), "--out", str(tmp_path / "figures"), "--bench", str(timings)])
    assert matplotlib.image.imread(tmp_path / "figures" / "bench.png").size > 1000
    text = path.read_text()
    assert "## Cost measured side by side (make bench)" in text
    assert "| fused | sn |" in text and "| plain | none |" in text
    with pytest.raises(SystemExit) as err:
        report.main([str(synthetic_sweep), "--out", str(tmp_path / "f2"), "--bench", str(tmp_path / "missing.json")])
    assert err.value.code == 2
