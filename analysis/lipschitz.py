"""How Lipschitz each method's D really is, from the diagnostics the trainer records at every
evaluation (metrics.jsonl rows' and result.json's `lipschitz`; benchmark/lipschitz.py says how
they are measured). Reads result files only.

    table = lipschitz_over_training(comparison)  # one row per (run, evaluation)
    fig = lipschitz_during_training(table, "ring8")
    md = sn_layer_table(comparison)               # reshaped sigma vs true operator norm, SN's layers

Runs are labelled and split as every other figure (analysis.compare: method, setting, context).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.collect import write_atomic_text
from analysis.compare import Comparison, panel_order
from analysis.figures import save
from analysis.numbers import fmt
from benchmark.contract import COMPLETED, METRICS_FILE, RESULT_FILE, read_json, read_jsonl

COLUMNS = ("grad_max", "grad_mean", "ascent_max", "layer_product", "layer_product_is_bound", "output_max")
LABELS = ("dataset", "model", "width", "regularizer", "loss", "method", "setting_label", "context", "seed")
# Published after the SN paper, each with its own claim about D's Lipschitz constant: drawn again
# beside SN, in a figure of their own (every method's figure has too many lines to compare them in).
SINCE_THE_PAPER = {"regularizer": ("gn", "bssn", "lecam"), "loss": ("rpgan",)}


def lipschitz_over_training(comparison: Comparison) -> pd.DataFrame:
    """One row per (run, evaluation with diagnostics): the run's labels, the generator update and
    the scalar diagnostics (`empirical`: the ascent's max where measured, else grad_max)."""
    rows = []
    for run in comparison.runs.to_dict("records"):
        for r in read_jsonl(Path(run["run_dir"]) / METRICS_FILE):
            if "lipschitz" in r and (comparison.at is None or r["iteration"] <= comparison.at):
                rows.append({"run_dir": run["run_dir"], **{k: run.get(k) for k in LABELS},
                             "iteration": r["iteration"], **{k: r["lipschitz"].get(k) for k in COLUMNS}})
    table = pd.DataFrame(rows, columns=["run_dir", *LABELS, "iteration", *COLUMNS])
    table["empirical"] = table.ascent_max.where(table.ascent_max.notna(), table.grad_max).astype(float)
    return table


def _panels(part: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One panel per context and setting (analysis.compare's labels); methods are the lines, seeds
    drawn as their median."""
    groups = sorted(part.groupby(["context", "setting_label"]), key=lambda item: panel_order(*item[0]))
    return [(f"{context}, setting {setting}" if context != "all runs" else f"setting {setting}", group)
            for (context, setting), group in groups]


def since_the_paper(table: pd.DataFrame) -> pd.Series:
    """Which rows belong to a method newer than the SN paper (SINCE_THE_PAPER)."""
    return table.regularizer.isin(SINCE_THE_PAPER["regularizer"]) | table.loss.isin(SINCE_THE_PAPER["loss"])


def lipschitz_during_training(table: pd.DataFrame, dataset: str, subtitle: str = "") -> plt.Figure:
    """Each method's empirical Lipschitz estimate (solid: a lower bound) and layer product
    (dashed: an upper bound where D is a chain) against generator updates, log scale; the
    median over seeds, one panel per configuration of `dataset`."""
    part = table[table.dataset == dataset]
    panels = _panels(part)
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False, sharey=True)
    methods = sorted(part.method.dropna().unique())
    colors = dict(zip(methods, plt.get_cmap("tab20")(np.linspace(0, 1, max(len(methods), 2))), strict=False))
    for ax, (title, group) in zip(axes.flat, panels, strict=False):
        for name, runs in group.groupby("method"):
            median = runs.groupby("iteration")[["empirical", "layer_product"]].median().sort_index()
            bound = runs.layer_product_is_bound.all()
            ax.plot(median.index, median.empirical.where(median.empirical > 0), "-o", ms=3, color=colors[name],
                    label=name)
            ax.plot(median.index, median.layer_product.where(median.layer_product > 0), "--" if bound else ":",
                    color=colors[name], label=None if bound else f"{name}: product is no bound")
        ax.set_yscale("log")
        ax.set_title(title or dataset, fontsize=9)
        ax.set_xlabel("generator updates")
        ax.grid(alpha=0.3, which="both")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("Lipschitz constant of D")
    # every method once, from whichever panel drew it (a Figure 11 panel has SN and WN only)
    legend = {}
    for ax in axes.flat[:len(panels)]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels = sorted(legend, key=lambda label: (label.split(":")[0], ":" in label))
    fig.legend([legend[label] for label in labels], labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title="solid: empirical (lower bound)\ndashed: layer product (upper bound)", title_fontsize=8)
    fig.suptitle(f"{dataset}: measured Lipschitz constant of D (median over seeds){subtitle}")
    fig.tight_layout()
    return fig


def sn_layer_table(comparison: Comparison) -> str:
    """Markdown: per D layer of SN's runs, the reshaped-matrix sigma the paper normalizes to 1
    next to the true operator norm of the layer as applied, both from the final record
    (result.json); one table per dataset and model, a column per configuration (its lowest
    completed seed)."""
    runs = comparison.runs
    sn = runs[(runs.regularizer == "sn") & (runs.status == COMPLETED)].sort_values("seed")
    chosen = sn.drop_duplicates("config_id")
    chosen = chosen.iloc[sorted(range(len(chosen)), key=lambda i: panel_order(chosen.context.iloc[i],
                                                                               chosen.setting_label.iloc[i]))]
    blocks = []
    for (dataset, model, width), group in chosen.groupby(["dataset", "model", "width"], dropna=False, sort=True):
        columns, cells, products, iterations = [], {}, [], set()
        for run in group.to_dict("records"):
            result = read_json(Path(run["run_dir"]) / RESULT_FILE)
            lipschitz = result.get("lipschitz") or {}
            if lipschitz.get("iteration") != result["iteration"]:
                continue  # no diagnostics of the final weights
            column = f"{run['method']}, {run['setting_label']}, seed {run['seed']}"
            iterations.add(str(result["iteration"]))
            columns.append(column)
            for layer, true in lipschitz["operator_norm"].items():
                cells.setdefault(layer, {})[column] = f"{fmt(result['spectral_norms'].get(layer), 4)} / {fmt(true, 4)}"
            products.append(f"{column}: {fmt(lipschitz['layer_product'], 4)} / {fmt(lipschitz['grad_max'], 4)}")
        if not columns:
            continue
        lines = [f"{dataset}, {model}" + (f" width {width}" if pd.notna(width) else "")  # a points model has none
                 + f", after {' or '.join(sorted(iterations))} generator updates; each cell: reshaped sigma / operator norm:",
                 "",
                 "| layer | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += [f"| {layer} | " + " | ".join(row.get(c, "-") for c in columns) + " |" for layer, row in cells.items()]
        lines += ["", "Layer product / largest input gradient: " + "; ".join(products) + "."]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def lipschitz_section(comparison: Comparison, out_dir: Path) -> list[str]:
    """report.md's section: a figure per dataset and SN's per-layer table (nothing when no run
    recorded diagnostics)."""
    table = lipschitz_over_training(comparison)
    if table.empty:
        return []
    md = ["## How Lipschitz is each discriminator", "",
          "Measured at every evaluation (docs/lipschitz.md): the largest input-gradient norm "
          "over fixed real, generated and interpolated samples, tightened by gradient ascent on input pairs "
          "(a lower bound on D's Lipschitz constant), and the product of the layers' true operator norms "
          "(an upper bound where D is a chain of its layers and 1-Lipschitz activations).", ""]
    newer = table[since_the_paper(table) | (table.regularizer == "sn")]
    newer = newer[newer.context.isin(newer[since_the_paper(newer)].context)]  # not SN's Figure 11 contexts
    for dataset in sorted(table.dataset.dropna().unique()):
        save(lipschitz_during_training(table, dataset), out_dir, f"lipschitz_{dataset}")
        md += [f"![Lipschitz constant of D on {dataset}](lipschitz_{dataset}.png)", ""]
        if since_the_paper(newer[newer.dataset == dataset]).any():
            name = f"lipschitz_{dataset}_since_the_paper"
            save(lipschitz_during_training(newer, dataset, ": methods since the paper beside SN"), out_dir, name)
            md += [f"The methods published since the SN paper ({', '.join(SINCE_THE_PAPER['regularizer'])}, "
                   f"the {', '.join(SINCE_THE_PAPER['loss'])} loss) beside SN, from the same records:", "",
                   f"![Lipschitz constant of D on {dataset}, methods since the paper]({name}.png)", ""]
    layers = sn_layer_table(comparison)
    if layers:
        write_atomic_text(out_dir / "lipschitz_sn_layers.md", layers + "\n")
        md += ["### SN: the reshaped sigma it normalizes vs each layer's true operator norm", "", layers, ""]
    return md
