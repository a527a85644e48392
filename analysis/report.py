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
from analysis.compare import FAILED_POLICIES, SELECTIONS, Comparison, panel_order  # noqa: E402
from analysis.lipschitz import lipschitz_over_training, lipschitz_section  # noqa: E402
from analysis.numbers import estimate, fmt  # noqa: E402
from analysis.paper import FIGURES_1_2  # noqa: E402
from analysis.ranking import SETTLED, ranking_figure, ranking_markdown, ranking_over_training  # noqa: E402
from analysis.sweep_status import default_sweep  # noqa: E402
from benchmark.contract import FAILED, STATUSES, metric_kind, metric_space, parse_metric  # noqa: E402
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
    counted = "ops_per_d_step" in bench  # operations per step (docs/cost.md); older bench JSONs have none
    F.save(F.bench_bars(bench), out_dir, "bench")
    md = ["## Cost measured side by side (make bench)", "",
          f"From `{path}`, on {bench.device_name.iloc[0]}: {bench_shape(s)}, median of {s['rounds']} interleaved "
          "generator updates. The cost verdict reads these.", "",
          "![bench](bench.png)", "",
          "| variant | regularizer | s / G update | ratio to none | s / D step | s / G step | GFLOP / G update |"
          + (" ATen ops / D step | ATen ops / G step |" if counted else ""),
          "|---|---|---|---|---|---|---|" + ("---|---|" if counted else "")]
    md += [f"| {r.variant} | {r.regularizer} | {r.seconds_per_generator_update:.4f} | {r.ratio_generator_update:.3f} "
           f"| {r.seconds_per_d_step:.4f} | {r.seconds_per_g_step:.4f} | {r.gflop_per_generator_update:.1f} |"
           + (f" {r.ops_per_d_step:.0f} | {r.ops_per_g_step:.0f} |" if counted else "")
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
    write_atomic_text(out_dir / "ranking.md", ranking_markdown(stability) + "\n")  # for pages that embed it
    return ["## Where the ranking settles", "",
            f"Spearman correlation between the ranking of the methods by {metric} at each evaluation and the "
            f"ranking at the last one, per setting (mean over seeds, failures counted as in the tables). The "
            f"ranking is settled from the first point where it stays >= {SETTLED}; \"never\" means the "
            f"budget is too short to rank the methods under that setting.", "",
            f"![ranking over training](ranking_{metric}.png)", "", ranking_markdown(stability), ""]


def spectra_section(comparison: Comparison, out_dir: Path) -> list[str]:
    md = []
    for context, chosen in comparison.drawn_runs().items():
        primary = comparison.primary(context)
        suffix = "" if len(comparison.contexts()) == 1 else f"_{_slug(context)}"
        title = "" if not suffix else f"\n{context}"
        if not chosen:
            continue
        labels = {m: F.run_label(comparison, d) for m, d in chosen.items()}
        at_c = comparison.representative_runs(context, primary, setting="C")
        fig9 = at_c or chosen
        md += [f"## Discriminator spectra and samples: {context}", "",
               f"Figure 3 and the samples: each method's best run by {primary or 'seed (no metric)'} "
               f"(its best setting, its best seed): " + "; ".join(labels[m] for m in sorted(labels)), "",
               "Figure 9: " + ("setting C, as in the paper" if at_c else
                               "no run under setting C, so each method's best run instead"), ""]
        later = comparison.ends_past_at(chosen.values())
        if later:
            md += [f"The spectra and samples are each run's last (a record keeps no others); these runs trained "
                   f"past generator update {comparison.at}, where the tables score them, so theirs come from "
                   f"their end: " + "; ".join(f"{labels[m]} at {later[d]}" for m, d in sorted(chosen.items())
                                              if d in later), ""]
        F.save(F.singular_value_spectra(chosen, title), out_dir, f"spectra_final{suffix}")
        F.save(F.sigma_max_during_training(fig9, title), out_dir, f"sigma_max_training{suffix}")
        F.save(F.sample_grids(chosen, labels, title), out_dir, f"samples{suffix}")
        md += [f"![final spectra](spectra_final{suffix}.png)", "",
               f"![sigma max during training](sigma_max_training{suffix}.png)", "",
               f"![samples](samples{suffix}.png)", ""]
    return md


COMPANION = {"mixture_kl": "mixture_modes", "mixture_modes": "mixture_kl", "fid": "is", "is": "fid"}


def companion_metric(comparison: Comparison, primary: str) -> str | None:
    """The metric shown beside the primary one (modes beside KL, IS beside FID), in the same space."""
    want = COMPANION.get(metric_kind(primary).key)
    space = metric_space(primary)
    return next((m for m in comparison.metrics() if metric_kind(m).key == want and metric_space(m) == space), None)


def summary_markdown(comparison: Comparison, primary: str) -> str:
    """Each method at its best and its worst setting by the primary metric, with the companion metric
    of the same runs: the short table a README embeds (generated, so its numbers are the records')."""
    other = companion_metric(comparison, primary)
    shown = [primary] + ([other] if other else [])
    best, worst = comparison.best_settings(primary), comparison.worst_settings(primary)
    tables = {m: comparison.summary(m).set_index(["context", "method", "setting"]) for m in shown}
    blocks = []
    for context in comparison.contexts():
        head = [context if len(comparison.contexts()) > 1 else "method", "best setting", *shown, "worst setting", *shown]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        b = best[best.context == context].set_index("method")
        w = worst[worst.context == context].set_index("method")
        ascending = not metric_kind(primary).higher_is_better
        for method in b.dropna(subset=["setting"]).sort_values("mean", ascending=ascending, kind="stable").index:
            cells = [method]
            for row in (b.loc[method], w.loc[method]):
                cells.append(row.setting)
                for m in shown:
                    key = (context, method, row.setting)
                    cells.append(estimate(tables[m].loc[key]) if key in tables[m].index else "-")
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    n = sorted(comparison.summary(primary).seeds.unique())
    scored = f"at generator update {comparison.at}" if comparison.at else comparison.select
    return ("\n\n".join(blocks) + f"\n\nEach method at its best and its worst setting by {primary} "
            f"({'higher' if metric_kind(primary).higher_is_better else 'lower'} is better; {scored} evaluation; a tie "
            f"goes to the earlier setting): mean [95% bootstrap interval] over {'/'.join(map(str, n))} seeds, a "
            f"diverged or failed seed counted as {comparison.failed}.")


def schedule_section(comparison: Comparison, primary: str | None) -> list[str]:
    """SN with one power iteration per D update (Algorithm 1) beside SN with one per D call (the
    authors' Chainer code): whether the schedule changes the outcome, per setting, with intervals."""
    runs = comparison.runs
    schedule = runs.config.map(lambda c: c.get("regularizer.power_iteration"))
    sn = runs[(runs.regularizer == "sn") & schedule.notna()]
    if primary is None or schedule[sn.index].nunique() < 2:
        return []
    other = companion_metric(comparison, primary)
    shown = [primary] + ([other] if other else [])
    tables = {m: comparison.summary(m) for m in shown}
    lipschitz = _final_lipschitz(comparison, sn)
    head = ["context", "setting", "schedule", *shown, "max sigma_max", "empirical L (median)", "layer product (median)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # only where both schedules ran (a Figure 11 context has SN under one schedule: nothing to compare)
    sn = sn[schedule[sn.index].groupby([sn.context, sn.setting_label]).transform("nunique") > 1]
    groups = sorted(sn.groupby(["context", "setting_label", "method"]), key=lambda item: (panel_order(*item[0][:2]),
                                                                                          item[0][2]))
    for (context, setting, method), group in groups:
        cells = [context, setting, method]
        for m in shown:
            row = tables[m][(tables[m].context == context) & (tables[m].method == method)
                            & (tables[m].setting == setting)]
            cells.append(estimate(row.iloc[0]) if len(row) else "-")
        sigma = comparison.sigma_over_training(group.run_dir).sigma
        diag = lipschitz[lipschitz.run_dir.isin(group.run_dir)]
        cells += [fmt(float(sigma.max())) if len(sigma) else "-",
                  fmt(float(diag.empirical.median())) if len(diag) else "-",
                  fmt(float(diag.layer_product.median())) if len(diag) else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return ["## SN's power-iteration schedule", "",
            "per_update: one power iteration per D update (the paper's Algorithm 1); per_forward: one before every "
            "training-mode D call (the authors' Chainer code). Metrics as in the tables; max sigma_max: the largest "
            "logged singular value of any SN layer (exact SVD of the weight D used); L: each run's last diagnostics, "
            "median over seeds.", "", *lines, ""]


def _final_lipschitz(comparison: Comparison, runs):
    table = lipschitz_over_training(comparison)
    table = table[table.run_dir.isin(runs.run_dir)]
    return table.sort_values("iteration").groupby("run_dir").tail(1)


def budget_section(runs, evals, comparison: Comparison, select: str, failed: str) -> list[str]:
    """The runs trained past the scored update, at that update and at their end, side by side (the
    same records): whether a departure survives a longer budget. Without its heading: make_report adds it."""
    planned = runs.iterations_planned.astype(float)
    longer = runs[planned > comparison.at]
    if longer.empty:
        return []
    primary = comparison.primary()
    other = companion_metric(comparison, primary) if primary else None
    md = [f"The runs trained past generator update {comparison.at}, scored there and at their end (same runs, same "
          f"records); 'apart' says whether the two intervals over seeds are disjoint (it needs two seeds or more).", ""]
    for budget, part in longer.groupby(planned[longer.index]):
        early = Comparison(part, evals, select=select, failed=failed, at=comparison.at)
        late = Comparison(part, evals, select=select, failed=failed)
        for metric in [m for m in (primary, other) if m]:
            a, b = early.summary(metric), late.summary(metric)
            head = ["context", "method", "setting", f"at {comparison.at}", f"at {int(budget)}", "apart"]
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            b = b.set_index(["method", "setting"])
            for r in a.itertuples():
                if (r.method, r.setting) not in b.index:
                    continue
                e = b.loc[(r.method, r.setting)]
                if r.n < 2 or e.n < 2:  # no interval over seeds: a split std is no run-to-run spread
                    apart = "- (one seed)"
                else:
                    apart = "yes" if r.ci_high < e.ci_low or e.ci_high < r.ci_low else "no"
                lines.append(f"| {r.context} | {r.method} | {r.setting} | {estimate(r)} | {estimate(e)} | {apart} |")
            md += [f"{metric}, {int(budget)}-update runs:", "", *lines, ""]
        verdicts = {name: check_claims(c) for name, c in (("at", early), ("end", late))}
        rows = [f"| {r.where} | {r.verdict} | {verdicts['end'].iloc[i].verdict} |"
                for i, r in enumerate(verdicts["at"].itertuples()) if r.where.startswith(FIGURES_1_2.label)]
        md += [f"Figures 1-2 on these runs alone, at {comparison.at} and at {int(budget)}:", "",
               f"| claim | at {comparison.at} | at {int(budget)} |", "|---|---|---|", *rows, ""]
    return md


def make_report(paths: list[Path], out_dir: Path, bench: Path | None = None, select: str = "final",
                failed: str = "worst", at: int | None = None) -> Path:
    """`bench`: make bench's JSON; by default the one a shipped reference carries (own_bench).
    `at`: score every run at that generator update (analysis.compare, rule 6) instead of its end."""
    bench = bench or own_bench(paths)
    runs, evals = collect(paths)
    comparison = Comparison(runs, evals, select=select, failed=failed, at=at)
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
    md += ["## Paper claims", "", "Each checkable claim, tested on these runs (statements and thresholds in "
           "analysis/paper.py; docs/comparison.md explains each test).", "", claims_markdown(verdicts), ""]
    if primary is not None:
        F.save(F.overview_heatmap(comparison, primary), out_dir, f"overview_{primary}")
        summary = summary_markdown(comparison, primary)
        write_atomic_text(out_dir / "summary.md", summary + "\n")
        md += ["## At a glance", "", f"![{primary} of every method under every setting](overview_{primary}.png)", "",
               summary, ""]
    md += schedule_section(comparison, primary)
    if at is not None:
        budget = budget_section(runs, evals, comparison, select, failed)
        if budget:  # also on its own, for pages that embed it (analysis/embed.py)
            write_atomic_text(out_dir / "budget.md", "\n".join(budget).rstrip("\n") + "\n")
            md += [f"## At {at} and at the end", "", *budget]
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
        md += [f"| {r.regularizer} | {r.seconds_per_generator_update:.4f} | {fmt(r.ratio_to_none)} |"
               for r in cost.itertuples()]
        md += [""]
    md += lipschitz_section(comparison, out_dir)
    if bench is not None:
        md += bench_section(bench, out_dir)
    failed_runs = comparison.runs[comparison.runs.status == FAILED]
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
    p.add_argument("--at", type=int, metavar="N",
                   help="score every run at generator update N (its evaluation there), as if it had stopped there: "
                        "a longer run extends a shorter one; runs whose budget ends before N are left out")
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
        report = make_report(paths, out, bench, args.select, args.failed, args.at)
    except (OSError, SchemaError, UnreadableRunError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main()
