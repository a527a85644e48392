"""The comparison report of a sweep: figures (PNG + PDF), tables (Markdown + LaTeX) and report.md.

    python -m analysis.report [SWEEP_DIR ...] [--out DIR]     (make figures SWEEP=...)

Default input: the newest folder under multirun/, else (a fresh clone) the shipped 2-D reference
results/reference_2d; default output: figures/<its name>/.
The timings of `make bench` get a section too, and the cost verdict reads them: --bench FILE, else the
bench.json a shipped reference carries, else outputs/bench/bench.json if it exists.
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
from analysis.claims import check_claims, claims_markdown  # noqa: E402
from analysis.collect import SchemaError, UnreadableRunError, collect, read_bench, read_json, write_atomic_text  # noqa: E402
from analysis.compare import FAILED_POLICIES, SELECTIONS, Comparison  # noqa: E402
from analysis.lipschitz import lipschitz_section  # noqa: E402
from analysis.ranking import SETTLED, ranking_figure, ranking_markdown, ranking_over_training  # noqa: E402
from analysis.sweep_status import default_sweep  # noqa: E402
from benchmark.contract import STATUSES, metric_kind, parse_metric  # noqa: E402
from benchmark.models import MODELS  # noqa: E402


def protocol_note(metrics: list[str]) -> str | None:
    """Say so when a sweep mixes protocols of one kind of metric in one feature space (say
    fid5k_10k and fid50k_train): they stay in separate panels and tables."""
    protocols: dict[str, set[str]] = {}
    for column in metrics:
        col = metric_kind(column)
        name = column[:len(column) - len(col.suffix)] if col.suffix else column
        kind, groups = parse_metric(name)
        protocols.setdefault(f"{kind.name} ({groups['space']})", set()).add(name)
    mixed = {k: sorted(v) for k, v in protocols.items() if len(v) > 1}
    if not mixed:
        return None
    return "Protocols are kept apart (separate figures and tables, never one axis): " + "; ".join(
        f"{k}: {', '.join(v)}" for k, v in sorted(mixed.items()))


DEFAULT_BENCH = Path("outputs/bench/bench.json")
OWN_BENCH = "bench.json"  # beside a shipped reference's runs: make bench on the machine they ran on


def own_bench(paths: list[Path]) -> Path | None:
    """The make bench JSON a shipped reference carries (results/<name>/bench.json). Its runs' training
    times come from different sessions' machines and loads, so the cost verdict reads this instead:
    every method timed side by side in one process, on the reference's model."""
    if len(paths) == 1 and (Path(paths[0]) / OWN_BENCH).is_file():
        return Path(paths[0]) / OWN_BENCH
    return None


def bench_shape(settings: dict) -> str:
    """What make bench timed, in words: `settings` is its JSON's."""
    s = settings
    data = ("2-D points" if MODELS[s["model"]].data == "points" else
            f"width {s['width']}, {s['channels']}x{s['size']}x{s['size']} random images")
    return f"{s['model']} ({data}), batch {s['batch']}, n_dis {s['n_dis']}"


def bench_section(path: Path, out_dir: Path) -> list[str]:
    bench = read_bench(path)
    s = read_json(path)["settings"]
    F.save(F.bench_bars(bench), out_dir, "bench")
    md = ["## Cost measured side by side (make bench)", "",
          f"From `{path}`, on {bench.device_name.iloc[0]}: {bench_shape(s)}, median of {s['rounds']} interleaved "
          "generator updates. The cost verdict reads these.", "",
          "![bench](bench.png)", "",
          "| variant | regularizer | s / G update | ratio to none | s / D step | s / G step | GFLOP / G update |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r.variant} | {r.regularizer} | {r.seconds_per_generator_update:.4f} | {r.ratio_generator_update:.3f} "
           f"| {r.seconds_per_d_step:.4f} | {r.seconds_per_g_step:.4f} | {r.gflop_per_generator_update:.1f} |"
           for r in bench.itertuples()]
    return md + [""]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")[:80]


def metric_section(comparison: Comparison, metric: str, out_dir: Path, primary: str | None) -> list[str]:
    kind = metric_kind(metric)
    role = {"quality": "quality", "coverage": "coverage", "precision": "precision-like"}[kind.role]
    md = [f"## {metric}" + (" (primary: the ranking of this report)" if metric == primary else ""), "",
          f"{kind.description}; {role}, {'higher' if kind.higher_is_better else 'lower'} is better."]
    if kind.role == "precision":
        md += ["", f"**Not a ranking.** A collapsed G puts every sample on a few modes and scores HIGH here; read it "
                   f"beside {primary or 'a coverage metric'}, never alone."]
    md += [""]
    F.save(F.settings_bars(comparison, metric), out_dir, f"settings_{metric}")
    md += [f"![{metric} by setting](settings_{metric}.png)", ""]
    table = F.best_setting_table(comparison, metric)
    write_atomic_text(out_dir / f"table2_{metric}.md", F.table_markdown(table, metric, comparison) + "\n")
    write_atomic_text(out_dir / f"table2_{metric}.tex", F.table_latex(table, metric, comparison) + "\n")
    md += ["Best setting per method (Table 2 style):", "", F.table_markdown(table, metric, comparison), ""]
    if not comparison.evals[comparison.evals.metric == metric].empty:
        F.save(F.learning_curves(comparison, metric), out_dir, f"curves_{metric}")
        md += [f"![{metric} during training](curves_{metric}.png)", ""]
    if F.ndis_contexts(comparison) and kind.role != "precision":
        F.save(F.ndis_figure(comparison, metric), out_dir, f"ndis_{metric}")
        md += ["Figure 11 (n_dis):", "", f"![{metric} against n_dis](ndis_{metric}.png)", ""]
    return md


def ranking_section(comparison: Comparison, metric: str, out_dir: Path) -> list[str]:
    """Whether the budget was long enough to rank the methods (analysis/ranking.py)."""
    stability = ranking_over_training(comparison, metric)
    if stability.empty:
        return []
    F.save(ranking_figure(stability, metric), out_dir, f"ranking_{metric}")
    return ["## Where the ranking settles", "",
            f"Spearman correlation between the ranking of the methods by {metric} at each evaluation and the "
            f"ranking at the last one, per setting (mean over seeds, failures counted as in the tables). The "
            f"ranking is settled from the first point where it stays >= {SETTLED}; \"never\" means the "
            f"budget is too short to rank the methods under that setting.", "",
            f"![ranking over training](ranking_{metric}.png)", "", ranking_markdown(stability), ""]


def spectra_section(comparison: Comparison, out_dir: Path) -> list[str]:
    md = []
    for context in comparison.contexts():
        primary = comparison.primary(context)
        suffix = "" if len(comparison.contexts()) == 1 else f"_{_slug(context)}"
        title = "" if not suffix else f"\n{context}"
        chosen = F.representative_runs(comparison, context, primary)
        if not chosen:
            continue
        labels = {m: F.run_label(comparison, d) for m, d in chosen.items()}
        at_c = F.representative_runs(comparison, context, primary, setting="C")
        fig9 = at_c or chosen
        md += [f"## Discriminator spectra and samples: {context}", "",
               f"Figure 3 and the samples: each method's best run by {primary or 'seed (no metric)'} "
               f"(its best setting, its best seed): " + "; ".join(labels[m] for m in sorted(labels)), "",
               "Figure 9: " + ("setting C, as in the paper" if at_c else
                               "no run under setting C, so each method's best run instead"), ""]
        F.save(F.singular_value_spectra(chosen, title), out_dir, f"spectra_final{suffix}")
        F.save(F.sigma_max_during_training(fig9, title), out_dir, f"sigma_max_training{suffix}")
        F.save(F.sample_grids(chosen, labels, title), out_dir, f"samples{suffix}")
        md += [f"![final spectra](spectra_final{suffix}.png)", "",
               f"![sigma max during training](sigma_max_training{suffix}.png)", "",
               f"![samples](samples{suffix}.png)", ""]
    return md


def make_report(paths: list[Path], out_dir: Path, bench: Path | None = None, select: str = "final",
                failed: str = "worst") -> Path:
    """`bench`: make bench's JSON; by default the one a shipped reference carries (own_bench)."""
    bench = bench or own_bench(paths)
    runs, evals = collect(paths)
    comparison = Comparison(runs, evals, select=select, failed=failed)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = comparison.metrics()
    primary = comparison.primary()
    metrics = sorted(metrics, key=lambda m: (m != primary, metric_kind(m).role == "precision", m))
    counts = comparison.runs.status.value_counts()
    md = [f"# regbench report: {', '.join(map(str, paths))}", "",
          f"{len(comparison.runs)} runs: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES
                                                         if counts.get(s, 0)), ""]
    if not comparison.duplicates.empty:
        md += [f"{len(comparison.duplicates)} record(s) repeat a configuration and seed already collected and were "
               f"counted once: " + ", ".join(f"`{r.run}`" for r in comparison.duplicates.itertuples()), ""]
    md += [comparison.policy_text(), "",
           "Split by: " + (", ".join(comparison.labels.context_keys) or "nothing (one context)")
           + ". Common to every run: " + (comparison.caption() or "-") + ".", ""]
    note = protocol_note(metrics)
    if note:
        md += [note, ""]
    bench_frame = read_bench(bench) if bench is not None else None
    verdicts = check_claims(comparison, bench_frame)
    write_atomic_text(out_dir / "claims.md", claims_markdown(verdicts) + "\n")
    md += ["## Paper claims", "", "Each checkable claim of the SN paper, tested on these runs (thresholds in "
           "analysis/claims.py and the README).", "", claims_markdown(verdicts), ""]
    if not metrics:
        md += ["No run has evaluation results yet: figures of metrics are skipped.", ""]
    for metric in metrics:
        md += metric_section(comparison, metric, out_dir, primary)
    if primary is not None:
        md += ranking_section(comparison, primary, out_dir)
    md += spectra_section(comparison, out_dir)
    cost = F.relative_cost(comparison.runs)
    if not cost.empty:
        F.save(F.cost_bars(comparison.runs), out_dir, "cost")
        md += ["## Cost", "", "![cost](cost.png)", "",
               "| regularizer | s / G update | ratio to none |", "|---|---|---|"]
        md += [f"| {r.regularizer} | {r.seconds_per_generator_update:.4f} | {F._fmt(r.ratio_to_none)} |"
               for r in cost.itertuples()]
        md += [""]
    md += lipschitz_section(comparison, out_dir)
    if bench is not None:
        md += bench_section(bench, out_dir)
    failed_runs = comparison.runs[comparison.runs.status == "failed"]
    if not failed_runs.empty:
        md += ["## Failed runs", ""] + [f"- `{r.run}`: {r.error}" for r in failed_runs.itertuples()] + [""]
    set_aside = runs.attrs.get("set_aside") or {}
    if set_aside:
        md += ["## Runs set aside (their files cannot be read; relaunching the sweep runs them again)", ""]
        md += [f"- `{d}`: {reason}" for d, reason in sorted(set_aside.items())] + [""]
    write_atomic_text(out_dir / "runs.csv", comparison.runs.drop(columns=["config"]).to_csv(index=False))
    report = out_dir / "report.md"
    write_atomic_text(report, "\n".join(md))
    return report


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweeps", nargs="*", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--bench", type=Path, help=f"make bench's JSON (default: the sweep's own {OWN_BENCH} for a shipped reference, "
                                                 f"else {DEFAULT_BENCH}, if it exists)")
    p.add_argument("--select", choices=SELECTIONS, default="final",
                   help="score each run's final evaluation (default, the authors' protocol) or its best one")
    p.add_argument("--failed", choices=FAILED_POLICIES, default="worst",
                   help="diverged/failed seeds count as the worst value (default) or are left out of the means")
    args = p.parse_args(argv)
    try:
        paths = args.sweeps or [default_sweep()]
        out = args.out or Path("figures") / paths[0].resolve().name
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"--out {out} is a file: name a folder (the report writes several files)")
        if args.bench is not None and not args.bench.is_file():
            raise FileNotFoundError(f"--bench {args.bench}: no such file (make bench writes {DEFAULT_BENCH})")
        bench = args.bench or own_bench(paths) or (DEFAULT_BENCH if DEFAULT_BENCH.is_file() else None)
        report = make_report(paths, out, bench, args.select, args.failed)
    except (OSError, SchemaError, UnreadableRunError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main()
