"""The SN paper's comparison figures and tables, from the DataFrames of analysis.collect.

Each function takes the frames (and a metric name where it matters), draws one
figure and returns it; `save` writes PNG and PDF. Metrics of different
protocols are never drawn in one panel: every metric column is its own figure.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.collect import final_spectra, sigma_over_training

# SN paper Table 2 (Inception score, FID) under its own protocol: is50k_10splits and fid5k_10k.
# Keys: (dataset, model, loss, regularizer); "ns" is the paper's standard loss.
PAPER_TABLE_2 = {
    ("cifar10", "cnn", "ns", "wc"): (6.41, 42.6), ("cifar10", "cnn", "ns", "gangp"): (6.93, 37.7),
    ("cifar10", "cnn", "wgan", "wgangp"): (6.68, 40.2), ("cifar10", "cnn", "ns", "bn"): (6.27, 56.3),
    ("cifar10", "cnn", "ns", "ln"): (7.19, 33.9), ("cifar10", "cnn", "ns", "wn"): (6.84, 34.7),
    ("cifar10", "cnn", "ns", "ortho"): (7.40, 29.0), ("cifar10", "cnn", "ns", "sn"): (7.42, 29.3),
    ("cifar10", "cnn", "hinge", "sn"): (7.58, 25.5),
    ("cifar10", "resnet", "hinge", "ortho"): (7.92, 23.8), ("cifar10", "resnet", "hinge", "sn"): (8.22, 21.7),
    ("stl10", "cnn", "ns", "wc"): (7.57, 64.2), ("stl10", "cnn", "wgan", "wgangp"): (8.42, 55.1),
    ("stl10", "cnn", "ns", "ln"): (7.61, 75.6), ("stl10", "cnn", "ns", "wn"): (7.16, 73.4),
    ("stl10", "cnn", "ns", "ortho"): (8.56, 46.7), ("stl10", "cnn", "ns", "sn"): (8.28, 53.1),
    ("stl10", "resnet", "hinge", "ortho"): (8.72, 42.4), ("stl10", "resnet", "hinge", "sn"): (9.10, 40.1),
}
PAPER_PROTOCOL = {"is50k_10splits": 0, "fid5k_10k": 1}
BOOKKEEPING = {"run_dir", "run", "status", "iteration", "iterations_planned", "diverged_at", "error",
               "seconds_per_generator_update", "train_seconds", "d_loss", "g_loss", "max_spectral_norm",
               "dataset", "model", "width", "regularizer", "loss", "setting", "lr", "beta1", "beta2", "n_dis",
               "seed", "batch_size"}


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """The final metrics present, one per protocol (their `_std` companions left out)."""
    return sorted(c for c in runs.columns if c not in BOOKKEEPING and not c.endswith("_std"))


def higher_is_better(metric: str) -> bool:
    return not any(key in metric for key in ("fid", "kid", "_kl"))


def save(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)
    return paths


def _ok(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    values = pd.to_numeric(runs[metric], errors="coerce") if metric in runs else pd.Series(dtype=float)
    return runs[(runs.status == "completed") & values.notna()].assign(value=values)


# ------------------------------------------------------------------ Figures 1 and 2
def settings_bars(runs: pd.DataFrame, metric: str) -> plt.Figure:
    """Final `metric` of every regularizer under every setting, one panel per dataset: the mean
    over seeds with a +-1 std error bar; runs that diverged or failed are marked, not dropped."""
    datasets = sorted(runs.dataset.dropna().unique())
    regs = sorted(runs.regularizer.dropna().unique())
    settings = sorted(runs.setting.dropna().unique())
    fig, axes = plt.subplots(len(datasets), 1, figsize=(max(6, 1.1 * len(settings) * max(1, len(regs)) / 4),
                                                         3.2 * len(datasets)), squeeze=False)
    width = 0.8 / max(1, len(regs))
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(regs), 2)))
    for ax, dataset in zip(axes[:, 0], datasets, strict=True):
        part = runs[runs.dataset == dataset]
        ok = _ok(part, metric)
        for i, reg in enumerate(regs):
            x = np.arange(len(settings)) + (i - (len(regs) - 1) / 2) * width
            stats = [ok[(ok.regularizer == reg) & (ok.setting == s)].value for s in settings]
            means = [v.mean() if len(v) else np.nan for v in stats]
            stds = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in stats]  # sample std, as in the tables
            ax.bar(x, means, width, yerr=stds, color=colors[i], label=reg, capsize=1.5, linewidth=0)
            for xi, s in zip(x, settings, strict=True):
                these = part[(part.regularizer == reg) & (part.setting == s)]
                bad = int(these.status.isin(["diverged", "failed"]).sum())
                if bad:  # shown, not dropped: a red cross at the axis with the count
                    ax.plot(xi, 0, marker="x", color="red", markersize=5, clip_on=False)
                    ax.annotate(str(bad), (xi, 0), textcoords="offset points", xytext=(0, 4), fontsize=6,
                                color="red", ha="center")
        ax.set_xticks(np.arange(len(settings)), settings)
        ax.set_ylabel(metric)
        best = "higher is better" if higher_is_better(metric) else "lower is better"
        ax.set_title(f"{dataset}: {metric} ({best}); mean +- sample std over seeds; red x = diverged/failed runs",
                     fontsize=9)
    axes[0, 0].legend(ncol=min(6, len(regs)), fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.12))
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ Table 2
def best_setting_table(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (dataset, model, loss, regularizer): the setting with the best mean over seeds, its
    mean and std, how many seeds, and the paper's number where the protocol is the paper's."""
    rows = []
    ok = _ok(runs, metric)
    for key, group in runs.groupby(["dataset", "model", "loss", "regularizer"], dropna=False):
        per_setting = ok[ok.set_index(["dataset", "model", "loss", "regularizer"]).index.isin([key])]
        per_setting = per_setting.groupby("setting").value.agg(["mean", "std", "count"])
        bad = int(group.status.isin(["diverged", "failed"]).sum())
        if per_setting.empty:
            rows.append({"dataset": key[0], "model": key[1], "loss": key[2], "regularizer": key[3],
                         "best_setting": None, "mean": np.nan, "std": np.nan, "seeds": 0, "diverged_or_failed": bad})
            continue
        best = per_setting["mean"].idxmax() if higher_is_better(metric) else per_setting["mean"].idxmin()
        row = per_setting.loc[best]
        rows.append({"dataset": key[0], "model": key[1], "loss": key[2], "regularizer": key[3],
                     "best_setting": best, "mean": row["mean"], "std": 0.0 if row["count"] < 2 else row["std"],
                     "seeds": int(row["count"]), "diverged_or_failed": bad})
    table = pd.DataFrame(rows)
    if metric in PAPER_PROTOCOL and not table.empty:
        table["paper"] = [PAPER_TABLE_2.get((r.dataset, r.model, r.loss, r.regularizer), (None, None))[
            PAPER_PROTOCOL[metric]] for r in table.itertuples()]
    return table


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def table_markdown(table: pd.DataFrame, metric: str) -> str:
    head = ["dataset", "model", "loss", "regularizer", "best setting", f"{metric} (mean +- std)", "seeds",
            "diverged/failed"] + (["paper"] if "paper" in table else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        cells = [r.dataset, r.model, r.loss, r.regularizer, _fmt(r.best_setting),
                 f"{_fmt(r.mean)} +- {_fmt(r.std, 2)}", str(r.seeds), str(r.diverged_or_failed)]
        if "paper" in table:
            cells.append(_fmt(r.paper))
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    if metric in PAPER_PROTOCOL:
        lines.append(f"\nPaper values: SN paper Table 2, same protocol ({metric}).")
    else:
        lines.append(f"\nNo paper values: the SN paper reports is50k_10splits and fid5k_10k; {metric} is another "
                     f"protocol, so its numbers are not comparable to the paper's.")
    return "\n".join(lines)


def table_latex(table: pd.DataFrame, metric: str) -> str:
    def esc(text: str) -> str:
        return str(text).replace("_", r"\_")
    paper = "paper" in table
    cols = "lllll" + "r" * (3 + paper)
    lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(["dataset", "model", "loss", "regularizer", "setting", esc(metric), "seeds", "div./failed"]
                        + (["paper"] if paper else [])) + r" \\", r"\midrule"]
    for r in table.itertuples():
        cells = [esc(r.dataset), esc(r.model), esc(r.loss), esc(r.regularizer), esc(_fmt(r.best_setting)),
                 rf"{_fmt(r.mean)} $\pm$ {_fmt(r.std, 2)}", str(r.seeds), str(r.diverged_or_failed)]
        if paper:
            cells.append(_fmt(r.paper))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


# ------------------------------------------------------------------ learning curves
def learning_curves(runs: pd.DataFrame, evals: pd.DataFrame, metric: str) -> plt.Figure:
    """`metric` against generator updates and against training seconds, one line per regularizer
    at its best setting (mean over seeds)."""
    fig, (by_iter, by_time) = plt.subplots(1, 2, figsize=(10, 3.6))
    table = best_setting_table(runs, metric)
    data = evals[evals.metric == metric]
    for r in table.dropna(subset=["best_setting"]).itertuples():
        sel = data[(data.regularizer == r.regularizer) & (data.setting == r.best_setting) & (data.dataset == r.dataset)]
        if sel.empty:
            continue
        curve = sel.groupby("iteration").agg(value=("value", "mean"), seconds=("seconds", "mean"))
        label = f"{r.regularizer} ({r.best_setting})"
        by_iter.plot(curve.index, curve.value, marker=".", label=label)
        by_time.plot(curve.seconds, curve.value, marker=".", label=label)
    by_iter.set_xlabel("generator updates")
    by_time.set_xlabel("training seconds")
    for ax in (by_iter, by_time):
        ax.set_ylabel(metric)
    if by_time.lines:
        by_time.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{metric} during training, each regularizer at its best setting (mean over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ spectra (Figures 3 and 9)
def representative_runs(runs: pd.DataFrame, metric: str | None) -> dict[str, str]:
    """One finished run per regularizer: its best setting's lowest seed (or any, without a metric)."""
    chosen = {}
    finished = runs[runs.status.isin(["completed", "diverged"])]
    best = best_setting_table(runs, metric).set_index("regularizer").best_setting if metric else None
    for reg, group in finished.groupby("regularizer"):
        if best is not None and reg in best.index and isinstance(best[reg], str):
            group = group[group.setting == best[reg]] if (group.setting == best[reg]).any() else group
        chosen[reg] = group.sort_values(["seed", "setting"]).run_dir.iloc[0]
    return chosen


def singular_value_spectra(chosen: dict[str, str]) -> plt.Figure:
    """Squared singular values of each D layer at the end, normalized by the largest, in
    descending order over a normalized index (the SN paper's Figure 3)."""
    spectra = {reg: final_spectra(d) for reg, d in chosen.items()}
    layers = next((list(s) for s in spectra.values() if s), [])
    cols = min(4, max(1, len(layers)))
    rows = max(1, math.ceil(len(layers) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, layer in zip(axes.flat, layers, strict=False):
        for reg, spectrum in spectra.items():
            values = np.asarray(spectrum.get(layer, []), dtype=float) ** 2
            if len(values) == 0 or not np.isfinite(values).all() or values.max() == 0:
                continue
            ax.plot(np.linspace(0, 1, len(values)), values / values.max(), label=reg,
                    marker="o" if len(values) == 1 else None)  # a dense layer to one logit has one value
        ax.set_title(f"layer {layer}", fontsize=8)
        ax.set_ylim(0, 1.05)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("sigma^2 / max")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("squared singular values of D's layers at the end (normalized; index normalized)", fontsize=9)
    fig.tight_layout()
    return fig


def sigma_max_during_training(chosen: dict[str, str]) -> plt.Figure:
    """Largest singular value of each D layer over training, a panel per regularizer (Figure 9)."""
    regs = sorted(chosen)
    cols = min(4, max(1, len(regs)))
    rows = max(1, math.ceil(len(regs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, reg in zip(axes.flat, regs, strict=False):
        frame = sigma_over_training([chosen[reg]])
        for layer, part in frame.groupby("layer", sort=False):
            ax.plot(part.iteration, part.sigma, label=layer, linewidth=1)
        ax.set_title(reg, fontsize=8)
        ax.set_xlabel("generator updates", fontsize=7)
    for ax in list(axes.flat)[len(regs):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("largest singular value")
    axes[0, 0].legend(fontsize=5, ncol=2)
    fig.suptitle("largest singular value of each D layer during training (SN keeps it near 1)", fontsize=9)
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
def sample_grids(chosen: dict[str, str]) -> plt.Figure:
    regs = sorted(r for r in chosen if (Path(chosen[r]) / "samples" / "final.png").is_file())
    cols = min(4, max(1, len(regs)))
    rows = max(1, math.ceil(len(regs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, reg in zip(axes.flat, regs, strict=False):
        ax.imshow(plt.imread(Path(chosen[reg]) / "samples" / "final.png"))
        ax.set_title(f"{reg}: {Path(chosen[reg]).name}", fontsize=6)
    fig.suptitle("final samples of each regularizer's best run (fixed latents)", fontsize=9)
    fig.tight_layout()
    return fig
