"""Where the ranking of methods stops changing: a budget is long enough to compare methods
once the order they come in no longer moves with more training.

    stability = ranking_over_training(comparison, "mixture10k_kl")

At every evaluation point that all runs of a (context, setting) reached, the methods are ranked
by their mean over seeds of `metric`, under the comparison's failure policy: a seed that diverged
before that point counts as the metric's worst value, as it does in the final tables. The
ranking at each point is compared with the ranking at the last point by Spearman's rank
correlation (1: the same order; ties share their mean rank). "Settled" is the first point from
which the correlation stays at or above SETTLED for the rest of the budget.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.compare import Comparison, ordered_contexts
from benchmark.contract import COMPLETED, FINISHED, metric_kind

SETTLED = 0.9  # Spearman correlation with the final ranking from which on the ranking counts as settled


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equally long sequences (average ranks for ties); NaN
    where either is constant (no order to compare)."""
    ra, rb = pd.Series(a).rank().to_numpy(float), pd.Series(b).rank().to_numpy(float)
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _means_at(comparison: Comparison, runs: pd.DataFrame, metric: str, iteration: int, worst: float) -> pd.Series:
    """Per method, the mean of `metric` at `iteration` over its seeds; a seed without a value
    there (diverged earlier, or no good sample) counts as `worst`."""
    evals = comparison.evals
    at = evals[(evals.metric == metric) & (evals.iteration == iteration) & evals.run_dir.isin(runs.run_dir)]
    values = pd.to_numeric(at.set_index("run_dir").value, errors="coerce")
    per_seed = runs.run_dir.map(values).astype(float)
    if comparison.failed == "worst":
        per_seed = per_seed.fillna(worst)
    return per_seed.groupby(runs.method.to_numpy()).mean()


def ranking_over_training(comparison: Comparison, metric: str) -> pd.DataFrame:
    """One row per (context, setting, iteration): the rank correlation with the final ranking,
    the number of methods ranked, and `settled_at` (the same for every row of a setting)."""
    kind = metric_kind(metric)
    sign = -1.0 if kind.higher_is_better else 1.0  # rank 1 = best
    rows = []
    evals = comparison.evals[comparison.evals.metric == metric]
    finished = comparison.runs[comparison.runs.status.isin(FINISHED)]
    for (context, setting), runs in finished.groupby(["context", "setting_label"], sort=True):
        if runs.method.nunique() < 3:  # two methods have one order or the other: no ranking to settle
            continue
        completed = runs[runs.status == COMPLETED].run_dir
        reached = evals[evals.run_dir.isin(completed)].groupby("run_dir").iteration.apply(set)
        if reached.empty:
            continue
        points = sorted(set.intersection(*reached))  # evaluated in every completed run
        observed = pd.to_numeric(evals[evals.run_dir.isin(runs.run_dir)].value, errors="coerce").dropna()
        if not points or observed.empty:
            continue
        worst = kind.worst if kind.worst is not None else (observed.min() if kind.higher_is_better
                                                           else observed.max())
        ranked = {i: sign * _means_at(comparison, runs, metric, i, worst) for i in points}
        final = ranked[points[-1]]
        rhos = [spearman(ranked[i].reindex(final.index), final) for i in points]
        # the last point agrees with itself: settling there means the budget never showed a stable order
        settled_at = next((points[k] for k in range(len(points) - 1)
                           if all(r >= SETTLED for r in rhos[k:] if not math.isnan(r))), None)
        rows += [{"context": context, "setting": setting, "iteration": i, "spearman": rho,
                  "methods": int(ranked[i].notna().sum()), "settled_at": settled_at}
                 for i, rho in zip(points, rhos, strict=True)]
    return pd.DataFrame(rows, columns=["context", "setting", "iteration", "spearman", "methods", "settled_at"])


def ranking_figure(stability: pd.DataFrame, metric: str) -> plt.Figure:
    contexts = ordered_contexts(stability.context)
    fig, axes = plt.subplots(1, len(contexts), figsize=(5 * len(contexts), 3.4), squeeze=False)
    for ax, context in zip(axes[0], contexts, strict=True):
        part = stability[stability.context == context]
        for setting, line in part.groupby("setting", sort=True):
            ax.plot(line.iteration, line.spearman, marker=".", label=setting)
        ax.axhline(SETTLED, color="grey", lw=0.8, ls="--")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("generator updates")
        ax.set_ylabel("Spearman with the final ranking")
        ax.set_title(context, fontsize=8)
        ax.legend(fontsize=6, title="setting", title_fontsize=6)
    fig.suptitle(f"How the ranking of methods by {metric} moves with training (dashed: {SETTLED})", fontsize=9)
    fig.tight_layout()
    return fig


def ranking_markdown(stability: pd.DataFrame) -> str:
    """Per (context, setting): the correlation at each point and where the ranking settled."""
    lines = []
    for context, part in stability.groupby("context", sort=True):
        points = sorted(part.iteration.unique())
        lines += [f"{context}:", "", "| setting | " + " | ".join(map(str, points)) + " | settled at |",
                  "|---|" + "---|" * len(points) + "---|"]
        for setting, line in part.groupby("setting", sort=True):
            by_point = dict(zip(line.iteration, line.spearman, strict=True))
            settled = line.settled_at.iloc[0]
            lines.append(f"| {setting} | " + " | ".join(
                "-" if math.isnan(by_point.get(i, math.nan)) else f"{by_point[i]:.2f}" for i in points)
                + f" | {'never' if settled is None or pd.isna(settled) else int(settled)} |")
        lines.append("")
    return "\n".join(lines)
