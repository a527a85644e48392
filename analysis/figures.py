"""The SN paper's comparison figures and tables, from an analysis.compare.Comparison.

Each function takes the comparison (and a metric name where it matters), draws one
figure and returns it; `save` writes PNG and PDF. Metrics of different protocols are
never drawn in one panel (every metric is its own figure), and configurations are never
pooled: a panel per context (the keys that vary besides method, setting and seed),
labelled by what varies, with what every run shares said once in the caption.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.collect import final_spectra, sigma_over_training
from analysis.compare import Comparison, bootstrap_ci, ordered_contexts
from analysis.numbers import estimate, fmt
from analysis.paper import PAPER_PROTOCOLS, paper_value
from benchmark.contract import FINAL_SAMPLES, higher_is_better, write_atomic


def save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path in paths:  # atomically: a half-drawn figure never replaces a whole one
        write_atomic(path, lambda tmp: fig.savefig(tmp, bbox_inches="tight", dpi=120))
    plt.close(fig)
    return paths


def _direction(metric: str) -> str:
    return "higher is better" if higher_is_better(metric) else "lower is better"


def _yerr(means, lows, highs) -> np.ndarray:
    means, lows, highs = (np.asarray(x, dtype=float) for x in (means, lows, highs))
    return np.nan_to_num(np.vstack([means - lows, highs - means]), nan=0.0)


def _caption(fig: plt.Figure, text: str, comparison: Comparison) -> None:
    common = comparison.caption()
    fig.suptitle(text + (f"\n{common}" if common else ""), fontsize=8)


def _panels(n: int, width: float, height: float):
    fig, axes = plt.subplots(n, 1, figsize=(width, height * n), squeeze=False)
    return fig, axes[:, 0]


def method_colors(comparison: Comparison) -> dict[str, tuple]:
    """One color per method in every panel of a figure (ring8 has 14 methods, grid25 fewer: SN must
    not be red above and pink below), spread over tab20 as a single context's were."""
    methods = comparison.methods()
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(methods), 2)))
    return dict(zip(methods, colors[:len(methods)], strict=True))


# ------------------------------------------------------------------ Figures 1 and 2
def settings_bars(comparison: Comparison, metric: str) -> plt.Figure:
    """Final `metric` of every method under every setting, one panel per context: the mean over
    seeds with its 95% bootstrap interval; n under each bar; diverged/failed seeds in red."""
    table = comparison.summary(metric)
    contexts = ordered_contexts(table.context)
    n_settings = max(len(comparison.settings(c)) for c in contexts)
    n_methods = max(len(comparison.methods(c)) for c in contexts)
    fig, axes = _panels(len(contexts), max(6, 1.1 * n_settings * max(1, n_methods) / 4), 3.4)
    colors = method_colors(comparison)
    for ax, context in zip(axes, contexts, strict=True):
        part = table[table.context == context]
        methods, settings = comparison.methods(context), comparison.settings(context)
        width = 0.8 / max(1, len(methods))
        for i, method in enumerate(methods):
            rows = part[part.method == method].set_index("setting").reindex(settings)
            x = np.arange(len(settings)) + (i - (len(methods) - 1) / 2) * width
            ax.bar(x, rows["mean"], width, yerr=_yerr(rows["mean"], rows.ci_low, rows.ci_high), color=colors[method],
                   label=method, capsize=1.5, linewidth=0)
            for xi, r in zip(x, rows.itertuples(), strict=True):
                if isinstance(r.seeds, (int, np.integer)) or (isinstance(r.seeds, float) and not math.isnan(r.seeds)):
                    ax.annotate(f"{int(r.n)}", (xi, 0), textcoords="offset points", xytext=(0, -8), fontsize=5,
                                ha="center", color="0.3", annotation_clip=False)
                    bad = int(r.diverged + r.failed + r.no_value)
                    if bad:
                        ax.annotate(f"x{bad}", (xi, 0), textcoords="offset points", xytext=(0, -15), fontsize=6,
                                    ha="center", color="red", fontweight="bold", annotation_clip=False)
        ax.set_xticks(np.arange(len(settings)), settings, fontsize=7)
        ax.tick_params(axis="x", pad=17)
        ax.set_ylabel(metric)
        ax.set_title(f"{context}  ({_direction(metric)})", fontsize=8)
        ax.legend(ncol=min(6, len(methods)), fontsize=6, loc="upper left", bbox_to_anchor=(0, -0.24))
    _caption(fig, f"{metric} by setting: mean over seeds, 95% bootstrap interval; n scored seeds below each bar; "
                  f"red xN = diverged/failed/no-value seeds ({comparison.failed})", comparison)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ the whole comparison at a glance
def overview_heatmap(comparison: Comparison, metric: str, settings: tuple[str, ...] | None = None) -> plt.Figure:
    """Methods x settings, the mean over seeds in each cell (color: better is greener, scaled within
    each context), a dagger and count where seeds diverged, failed or have no value; methods ordered
    by their worst setting, the most robust on top. Sized to read at 800 px: the README's figure."""
    table = comparison.summary(metric)
    higher = higher_is_better(metric)
    contexts = ordered_contexts(table.context)
    shown = [s for s in (settings or comparison.settings()) if s in set(table.setting)]
    heights = [max(2, len(table[table.context == c].method.unique())) for c in contexts]
    fig, axes = plt.subplots(len(contexts), 1, figsize=(6.6, 0.9 + 0.28 * sum(heights) + 0.5 * len(contexts)),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, context in zip(axes[:, 0], contexts, strict=True):
        part = table[table.context == context]
        grid = part.pivot_table(index="method", columns="setting", values="mean", aggfunc="first").reindex(
            columns=[s for s in shown if s in set(part.setting)])
        bad = part.assign(bad=part.diverged + part.failed + part.no_value).pivot_table(
            index="method", columns="setting", values="bad", aggfunc="first").reindex_like(grid)
        worst = grid.min(axis=1) if higher else grid.max(axis=1)
        order = sorted(grid.index, key=lambda m: (-worst[m] if higher else worst[m], m))
        grid, bad = grid.loc[order], bad.loc[order]
        values = grid.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        ax.imshow(values, cmap="RdYlGn" if higher else "RdYlGn_r", vmin=low, vmax=high if high > low else low + 1,
                  aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            n_bad = bad.iat[i, j]
            text = fmt(value) + (f" \u2020{int(n_bad)}" if pd.notna(n_bad) and n_bad else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
        ax.set_xticks(range(grid.shape[1]), grid.columns, fontsize=8)
        ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
        ax.xaxis.tick_top()
        ax.set_title(f"{context}  ({metric}, {_direction(metric)})", fontsize=8, pad=14)
    fig.suptitle(f"mean over seeds; \u2020N: N seeds diverged, failed or without a value (scored "
                 f"{comparison.failed}); methods ordered by their worst setting", fontsize=7, y=0.995)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ Table 2
def best_setting_table(comparison: Comparison, metric: str) -> pd.DataFrame:
    """Per (context, method): its best setting, the mean and 95% interval over seeds, n, the
    failure counts, and the paper's number where the run is the paper's experiment."""
    table = comparison.best_settings(metric)
    if metric in PAPER_PROTOCOLS and not table.empty:
        table["paper"] = [paper_value(r, metric) for r in table.itertuples()]
    return table


def _table_rows(table: pd.DataFrame, comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    context = len(comparison.labels.context_keys) > 0
    head = (["context"] if context else []) + ["method", "best setting", "mean [95% CI]", "n / seeds",
                                               "diverged / failed / no value"] + (["paper"] if "paper" in table else [])
    rows = []
    for r in table.itertuples():
        cells = ([r.context] if context else []) + [
            r.method, fmt(r.setting), estimate(r), f"{r.n} / {r.seeds}", f"{r.diverged} / {r.failed} / {r.no_value}"]
        if "paper" in table:
            cells.append(fmt(r.paper))
        rows.append(cells)
    return head, rows


def table_caption(comparison: Comparison, metric: str) -> str:
    paper = (f"Paper: SN paper Table 2 under the same protocol ({metric}), shown only for the paper's own "
             f"experiment (full width, 100K updates, an unmodified setting); its +- is the std over the 10 IS "
             f"splits for the standard CNN and over seeds for the ResNets." if metric in PAPER_PROTOCOLS else
             f"No paper values: the SN paper reports is50k_10splits and fid5k_10k; {metric} is another protocol.")
    common = comparison.caption()
    return (f"Best setting per method by {metric} ({_direction(metric)}). {comparison.policy_text()} "
            + (f"Common to every run: {common}. " if common else "") + paper)


def table_markdown(table: pd.DataFrame, metric: str, comparison: Comparison) -> str:
    head, rows = _table_rows(table, comparison)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n\n" + table_caption(comparison, metric)


def table_latex(table: pd.DataFrame, metric: str, comparison: Comparison) -> str:
    def esc(text: str) -> str:
        return str(text).replace("_", r"\_").replace("%", r"\%")
    head, rows = _table_rows(table, comparison)
    lines = [rf"\begin{{tabular}}{{{'l' * len(head)}}}", r"\toprule", " & ".join(map(esc, head)) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(c).replace("+-", r"$\pm$") for c in cells) + r" \\" for cells in rows]
    lines += [r"\bottomrule", r"\end{tabular}", "% " + esc(table_caption(comparison, metric))]
    return "\n".join(lines)


# ------------------------------------------------------------------ learning curves
def _curve(evals: pd.DataFrame, run_dirs: list[str], metric: str) -> pd.DataFrame:
    data = evals[(evals.metric == metric) & evals.run_dir.isin(run_dirs)]
    data = data.assign(value=pd.to_numeric(data.value, errors="coerce")).dropna(subset=["value"])
    rows = []
    for iteration, part in data.groupby("iteration"):
        low, high = bootstrap_ci(part.value)
        rows.append({"iteration": iteration, "seconds": part.seconds.mean(), "mean": part.value.mean(),
                     "low": low, "high": high, "n": len(part)})
    return pd.DataFrame(rows, columns=["iteration", "seconds", "mean", "low", "high", "n"])


def learning_curves(comparison: Comparison, metric: str) -> plt.Figure:
    """`metric` against generator updates and training seconds, a line per method at its best
    setting: the mean over the seeds evaluated at that point, with its 95% bootstrap band
    (a seed that diverged stops contributing where its evaluations stop)."""
    best = comparison.best_settings(metric).dropna(subset=["setting"])
    contexts = ordered_contexts(best.context) or ["all runs"]
    fig, axes = plt.subplots(len(contexts), 2, figsize=(10, 3.4 * len(contexts)), squeeze=False)
    runs, colors = comparison.runs, method_colors(comparison)
    for (by_iter, by_time), context in zip(axes, contexts, strict=True):
        for r in best[best.context == context].itertuples():
            dirs = list(runs[(runs.context == context) & (runs.method == r.method)
                             & (runs.setting_label == r.setting)].run_dir)
            curve = _curve(comparison.evals, dirs, metric)
            if curve.empty:
                continue
            label = f"{r.method} ({r.setting})"
            color = colors[r.method]
            by_iter.plot(curve.iteration, curve["mean"], marker=".", color=color, label=label)
            by_time.plot(curve.seconds, curve["mean"], marker=".", color=color, label=label)
            if curve.low.notna().any():
                by_iter.fill_between(curve.iteration, curve.low, curve.high, color=color, alpha=0.15)
        by_iter.set_xlabel("generator updates")
        by_time.set_xlabel("training seconds")
        by_iter.set_title(context, fontsize=8)
        for ax in (by_iter, by_time):
            ax.set_ylabel(metric)
        if by_time.lines:
            by_time.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    _caption(fig, f"{metric} during training ({_direction(metric)}), each method at its best setting: mean over "
                  f"seeds, 95% bootstrap band", comparison)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ Figure 11
def ndis_contexts(comparison: Comparison) -> list[str]:
    """Contexts where some method ran one setting at several n_dis (the SN paper's Figure 11)."""
    runs = comparison.runs
    found = []
    for context, part in runs.groupby("context"):
        n_dis = part.config.map(lambda c: c.get("setting.n_dis"))
        per = n_dis.groupby([part.method, part.config.map(lambda c: c.get("setting.name"))]).nunique()
        if (per > 1).any():
            found.append(context)
    return found


def ndis_figure(comparison: Comparison, metric: str) -> plt.Figure:
    """`metric` against n_dis, a line per method (mean over seeds, 95% interval): the SN paper's
    Figure 11 (setting D's Adam, IS after 10K generator updates: WN degrades as n_dis grows)."""
    table = comparison.summary(metric)
    contexts = ndis_contexts(comparison)
    fig, axes = _panels(len(contexts), 5.5, 3.2)
    for ax, context in zip(axes, contexts, strict=True):
        part = table[table.context == context].dropna(subset=["n_dis"])
        for (method, setting_name), rows in part.groupby(["method", "setting_name"]):
            if rows.n_dis.nunique() < 2:
                continue
            rows = rows.sort_values("n_dis")
            ax.errorbar(rows.n_dis, rows["mean"], yerr=_yerr(rows["mean"], rows.ci_low, rows.ci_high), marker="o",
                        capsize=2, label=f"{method} (setting {setting_name})")
        ax.set_xscale("log", base=2)
        ticks = sorted(part.n_dis.unique())
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel("n_dis (D updates per G update)")
        ax.set_ylabel(metric)
        ax.set_title(f"{context}  ({_direction(metric)})", fontsize=8)
        ax.legend(fontsize=7)
    _caption(fig, f"{metric} against n_dis (SN paper Figure 11): mean over seeds, 95% bootstrap interval; "
                  f"failures {comparison.failed}", comparison)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ spectra (Figures 3 and 9)
def run_label(comparison: Comparison, run_dir: str) -> str:
    r = comparison.runs.set_index("run_dir").loc[run_dir]
    return f"{r.method}, {r.setting_label}, seed {r.seed}"


def singular_value_spectra(chosen: dict[str, str], title: str = "") -> plt.Figure:
    """Squared singular values of each D layer at the end, normalized by the largest, in
    descending order over a normalized index (the SN paper's Figure 3)."""
    spectra = {method: final_spectra(d) for method, d in chosen.items()}
    layers = next((list(s) for s in spectra.values() if s), [])
    cols = min(4, max(1, len(layers)))
    rows = max(1, math.ceil(len(layers) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers, strict=False):
        for method, spectrum in spectra.items():
            values = np.asarray(spectrum.get(layer, []), dtype=float) ** 2
            if len(values) == 0 or not np.isfinite(values).all() or values.max() == 0:
                continue
            ax.plot(np.linspace(0, 1, len(values)), values / values.max(), label=method,
                    marker="o" if len(values) == 1 else None)  # a dense layer to one logit has one value
        ax.set_title(f"layer {layer}", fontsize=8)
        ax.set_ylim(0, 1.05)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("sigma^2 / max")
    if axes[0, 0].lines:
        axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"squared singular values of D's layers at the end (normalized; index normalized){title}",
                 fontsize=8)
    fig.tight_layout()
    return fig


def sigma_max_during_training(chosen: dict[str, str], title: str = "") -> plt.Figure:
    """Largest singular value of each D layer over training, a panel per method (Figure 9)."""
    methods = sorted(chosen)
    cols = min(4, max(1, len(methods)))
    rows = max(1, math.ceil(len(methods) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, method in zip(axes.flat, methods, strict=False):
        frame = sigma_over_training([chosen[method]])
        for layer, part in frame.groupby("layer", sort=False):
            ax.plot(part.iteration, part.sigma, label=layer, linewidth=1)
        ax.set_title(method, fontsize=8)
        ax.set_xlabel("generator updates", fontsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("largest singular value")
    if axes[0, 0].lines:
        axes[0, 0].legend(fontsize=5, ncol=2)
    fig.suptitle(f"largest singular value of each D layer during training (SN keeps it near 1){title}", fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ cost (Figure 10)
def relative_cost(runs: pd.DataFrame) -> pd.DataFrame:
    """Seconds per generator update of each regularizer divided by `none`'s under the same
    dataset, model and setting (so n_dis matches), averaged over those groups."""
    keys = ["dataset", "model", "width", "setting", "n_dis", "batch_size"]
    # missing keys (an MLP has no width) as one value, so that they match like any other
    timed = runs[runs.seconds_per_generator_update.notna()].astype({k: object for k in keys}).fillna(
        {k: "-" for k in keys})
    base = timed[timed.regularizer == "none"].groupby(keys).seconds_per_generator_update.mean()
    rows = []
    for reg, group in timed.groupby("regularizer"):
        ratios = [r.seconds_per_generator_update / base[k] for r in group.itertuples()
                  if (k := tuple(getattr(r, c) for c in keys)) in base.index]
        rows.append({"regularizer": reg, "seconds_per_generator_update": group.seconds_per_generator_update.mean(),
                     "ratio_to_none": float(np.mean(ratios)) if ratios else np.nan,
                     "ratio_std": float(np.std(ratios)) if ratios else np.nan})
    return pd.DataFrame(rows)


def cost_bars(runs: pd.DataFrame) -> plt.Figure:
    cost = relative_cost(runs).sort_values("regularizer")
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(cost)), 3.2))
    ratio = cost.ratio_to_none.notna().any()
    values = cost.ratio_to_none if ratio else cost.seconds_per_generator_update
    ax.bar(cost.regularizer, values, yerr=cost.ratio_std if ratio else None, capsize=2, color="C0")
    if ratio:
        ax.axhline(1.0, color="0.4", linewidth=0.8, linestyle="--")
    ax.set_ylabel("time per G update / none's" if ratio else "seconds per generator update")
    ax.set_title("cost of each method (mean +- std over matching runs; training time only)", fontsize=9)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def bench_bars(bench: pd.DataFrame) -> plt.Figure:
    """`make bench`'s ratios to `none` (measured side by side in one process), one bar per variant."""
    variants = list(dict.fromkeys(bench.variant))
    regs = sorted(set(bench.regularizer))
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(regs) * len(variants)), 3.2))
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        rows = bench[bench.variant == variant].set_index("regularizer").reindex(regs)
        none_s = rows.loc["none", "seconds_per_generator_update"]
        ax.bar(np.arange(len(regs)) + (i - (len(variants) - 1) / 2) * width, rows.ratio_generator_update,
               width, label=f"{variant} (none: {none_s * 1e3:.1f} ms / G update)", color=f"C{i}")
    ax.axhline(1.0, color="0.4", linewidth=0.8, linestyle="--")
    ax.set_xticks(np.arange(len(regs)), regs, rotation=45)
    ax.set_ylabel("time per G update / none's")
    ax.set_title(f"cost of each method, make bench on {bench.device_name.iloc[0]}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ samples
def sample_grids(chosen: dict[str, str], labels: dict[str, str] | None = None, title: str = "") -> plt.Figure:
    """Final samples of each chosen run, titled by method, setting and seed (`labels`)."""
    regs = sorted(r for r in chosen if (Path(chosen[r]) / FINAL_SAMPLES).is_file())
    cols = min(4, max(1, len(regs)))
    rows = max(1, math.ceil(len(regs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, reg in zip(axes.flat, regs, strict=False):
        ax.imshow(plt.imread(Path(chosen[reg]) / FINAL_SAMPLES))
        ax.set_title((labels or {}).get(reg, reg), fontsize=7)
    fig.suptitle(f"final samples of each method's best run (fixed latents){title}", fontsize=8)
    fig.tight_layout()
    return fig
