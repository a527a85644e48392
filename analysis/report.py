"""The comparison report of a sweep: figures (PNG + PDF), tables (Markdown + LaTeX) and report.md.

    python -m analysis.report [SWEEP_DIR ...] [--out DIR]     (make figures SWEEP=...)

Default input: the newest folder under multirun/; default output: figures/<its name>/.
The timings of `make bench` (outputs/bench/bench.json, or --bench FILE) get a section too.
Reads result files only, writes only into the output folder.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, whatever display the shell has (notebooks keep their inline backend)

from analysis import figures as F  # noqa: E402
from analysis.collect import SchemaError, collect, read_bench  # noqa: E402
from analysis.lipschitz import lipschitz_section  # noqa: E402
from analysis.sweep_status import newest_sweep  # noqa: E402

STATUSES = ("completed", "diverged", "failed", "running", "started")


def protocol_note(metrics: list[str]) -> str | None:
    """Say so when a sweep mixes protocols of one kind of metric (they stay in separate panels)."""
    kinds: dict[str, list[str]] = {}
    for m in metrics:
        kind = re.sub(r"\d+k?", "", m.split("_")[0]) if not m.startswith("fmnist_") else "fmnist_" + re.sub(
            r"\d+k?", "", m.split("_")[1])
        kinds.setdefault(kind, []).append(m)
    mixed = {k: v for k, v in kinds.items() if len(v) > 1 and not k.startswith("mixture")}
    if not mixed:
        return None
    return "Protocols are kept apart (separate figures and tables, never one axis): " + "; ".join(
        f"{k}: {', '.join(v)}" for k, v in sorted(mixed.items()))


DEFAULT_BENCH = Path("outputs/bench/bench.json")


def bench_section(path: Path, out_dir: Path) -> list[str]:
    bench = read_bench(path)
    F.save(F.bench_bars(bench), out_dir, "bench")
    md = ["## Cost measured side by side (make bench)", "", f"From `{path}`, on {bench.device_name.iloc[0]}.", "",
          "![bench](bench.png)", "",
          "| variant | regularizer | s / G update | ratio to none | s / D step | s / G step | GFLOP / G update |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r.variant} | {r.regularizer} | {r.seconds_per_generator_update:.4f} | {r.ratio_generator_update:.3f} "
           f"| {r.seconds_per_d_step:.4f} | {r.seconds_per_g_step:.4f} | {r.gflop_per_generator_update:.1f} |"
           for r in bench.itertuples()]
    return md + [""]


def make_report(paths: list[Path], out_dir: Path, bench: Path | None = None) -> Path:
    runs, evals = collect(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = F.metric_columns(runs)
    counts = runs.status.value_counts()
    md = [f"# regbench report: {', '.join(map(str, paths))}", "",
          f"{len(runs)} runs: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES if counts.get(s, 0)), ""]
    note = protocol_note(metrics)
    if note:
        md += [note, ""]
    if not metrics:
        md += ["No run has evaluation results yet: figures of metrics are skipped.", ""]
    for metric in metrics:
        md += [f"## {metric}", ""]
        F.save(F.settings_bars(runs, metric), out_dir, f"settings_{metric}")
        md += [f"![{metric} by setting](settings_{metric}.png)", ""]
        table = F.best_setting_table(runs, metric)
        (out_dir / f"table2_{metric}.md").write_text(F.table_markdown(table, metric) + "\n")
        (out_dir / f"table2_{metric}.tex").write_text(F.table_latex(table, metric) + "\n")
        md += ["Best setting per regularizer (Table 2 style):", "", F.table_markdown(table, metric), ""]
        if not evals[evals.metric == metric].empty:
            F.save(F.learning_curves(runs, evals, metric), out_dir, f"curves_{metric}")
            md += [f"![{metric} during training](curves_{metric}.png)", ""]
    chosen = F.representative_runs(runs, metrics[0] if metrics else None)
    if chosen:
        md += ["## Discriminator spectra", "",
               f"Representative runs (best setting of {metrics[0] if metrics else 'any'}, lowest seed): "
               + ", ".join(f"{reg}: `{Path(d).name}`" for reg, d in sorted(chosen.items())), ""]
        F.save(F.singular_value_spectra(chosen), out_dir, "spectra_final")
        F.save(F.sigma_max_during_training(chosen), out_dir, "sigma_max_training")
        md += ["![final spectra](spectra_final.png)", "", "![sigma max during training](sigma_max_training.png)", ""]
        F.save(F.sample_grids(chosen), out_dir, "samples")
        md += ["## Samples", "", "![samples](samples.png)", ""]
    cost = F.relative_cost(runs)
    if not cost.empty:
        F.save(F.cost_bars(runs), out_dir, "cost")
        md += ["## Cost", "", "![cost](cost.png)", "",
               "| regularizer | s / G update | ratio to none |", "|---|---|---|"]
        md += [f"| {r.regularizer} | {r.seconds_per_generator_update:.4f} | {F._fmt(r.ratio_to_none)} |"
               for r in cost.itertuples()]
        md += [""]
    md += lipschitz_section(runs, out_dir)
    if bench is not None:
        md += bench_section(bench, out_dir)
    failed = runs[runs.status == "failed"]
    if not failed.empty:
        md += ["## Failed runs", ""] + [f"- `{r.run}`: {r.error}" for r in failed.itertuples()] + [""]
    runs.to_csv(out_dir / "runs.csv", index=False)
    report = out_dir / "report.md"
    report.write_text("\n".join(md))
    return report


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweeps", nargs="*", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--bench", type=Path, help=f"make bench's JSON (default: {DEFAULT_BENCH}, if it exists)")
    args = p.parse_args(argv)
    try:
        paths = args.sweeps or [newest_sweep()]
        out = args.out or Path("figures") / paths[0].resolve().name
        if args.bench is not None and not args.bench.is_file():
            raise FileNotFoundError(f"--bench {args.bench}: no such file (make bench writes {DEFAULT_BENCH})")
        bench = args.bench or (DEFAULT_BENCH if DEFAULT_BENCH.is_file() else None)
        report = make_report(paths, out, bench)
    except (FileNotFoundError, SchemaError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main()
