"""The comparison's rules (docs/comparison.md), applied to the frames of analysis.collect.

    table = Comparison(runs, evals).summary("fid5k_10k")      # one row per configuration

1. A configuration is every resolved config key but the seed (benchmark.contract.identity).
   Two records of one configuration and seed are one run: the most finished record counts.
2. Nothing is pooled across configurations. Keys that vary among the collected runs are
   sorted into three: the METHOD (regularizer.* and, where it varies, loss.*: the paper's
   Table 2 has "SN-GAN" and "SN-GAN, hinge" rows), the SETTING (setting.*: setting D with
   n_dis = 1 and with n_dis = 20 are two settings) and the CONTEXT (everything else that
   varies: dataset, model, width, budget, ...), by which every figure and table is split.
3. Failures count where they happen. A diverged or failed seed, and a finished seed whose
   metric has no value (mixture KL with no good sample), takes the worst value of its metric
   (`failed="worst"`, the default): the metric's worst possible value where it has one (IS 1,
   modes 0), else the worst value any run of the same context reached. So a setting where two
   of three seeds diverged is never chosen over one whose seeds all completed. `failed="exclude"`
   scores the finished seeds only (the counts still show what was left out).
4. Every number carries n and a 95% percentile-bootstrap interval of the mean over seeds
   (2000 resamples, a fixed generator: the same records give the same report). One seed has
   no interval; its IS split std is shown instead, labelled as such.
5. `select="final"` scores the final evaluation (the authors' protocol); `select="best"` the
   best evaluation during training (what some libraries report): tables say which.
6. `at=N` scores every run as if it had stopped at generator update N: its evaluation there
   (or, with select="best", its best up to there). A run trained further is the same training
   up to N (settings without a learning-rate decay depend on nothing past the present), so the
   budget leaves its configuration and a 10K run extends a 5K one; runs that end before N are
   left out and counted. Ties: a best or worst setting is chosen by mean, then by setting order.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.collect import sigma_over_training
from benchmark.contract import (
    COMPLETED,
    DIVERGED,
    ENDED,
    FAILED,
    FINISHED,
    STATUS_RANK,
    config_id,
    metric_kind,
    primary_metric,
)

FAILED_POLICIES = ("worst", "exclude")
SELECTIONS = ("final", "best")
BOOTSTRAP_RESAMPLES = 2000
# Config keys copied into every summary row (the paper's numbers are looked up by them).
DESCRIBING = {"dataset": "dataset.name", "model": "model.name", "width": "model.width", "loss": "loss.name",
              "regularizer": "regularizer.name", "setting_name": "setting.name", "n_dis": "setting.n_dis",
              "iterations": "budget.iterations", "batch_size": "batch_size"}


def _is_method_key(key: str) -> bool:
    return key.startswith(("regularizer.", "loss."))


def _is_setting_key(key: str) -> bool:
    return key.startswith("setting.")


def _value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _varying(configs: list[dict], keys=None) -> list[str]:
    keys = sorted(set().union(*configs)) if keys is None else keys
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def bootstrap_ci(values, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean; NaN with fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or not np.isfinite(values).all():
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass
class Labels:
    context_keys: list[str]   # varying keys that split figures and tables
    common: dict              # keys equal across all runs (said once, in captions)


BUDGET_KEY = "budget.iterations"


def stopped_at(runs: pd.DataFrame, evals: pd.DataFrame, at: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The records as they stood at generator update `at`: (runs, evals, left out). A run's metric
    columns become its evaluation at `at`, its status what it was then (a run that diverged later
    was running fine; one still training past `at` has a finished first part), and its budget
    leaves its configuration unless the learning rate decays over the budget."""
    planned = pd.to_numeric(runs.iterations_planned, errors="coerce")
    left_out = runs[~(planned >= at)]
    runs = runs[planned >= at].copy()
    evals = evals[pd.to_numeric(evals.iteration, errors="coerce") <= at]
    here = evals[evals.iteration == at]
    # the metric columns and their `_std` companions (an IS's split std belongs to the same evaluation)
    metrics = [c for c in runs.columns if metric_kind(c) is not None
               or (c.endswith("_std") and metric_kind(c[:-len("_std")]) is not None)]
    values = {(r.run_dir, r.metric): r.value for r in here.itertuples()}
    reached = set(here.run_dir)
    diverged_at = pd.to_numeric(runs.diverged_at, errors="coerce")
    status = runs.status.copy()
    still_fine = runs.run_dir.isin(reached) & ~(diverged_at <= at)
    status[still_fine] = COMPLETED
    runs["status"] = status
    for column in metrics:
        runs[column] = [values.get((d, column)) for d in runs.run_dir]
    runs["null_metrics"] = [tuple(sorted(m for m in metrics if (d, m) in values and values[d, m] is None))
                            for d in runs.run_dir]
    runs["iteration"] = pd.to_numeric(runs.iteration, errors="coerce").clip(upper=at)

    def without_budget(config: dict) -> dict:
        decays = config.get("setting.lr_decay") not in (None, "none")
        return config if decays else {k: v for k, v in config.items() if k != BUDGET_KEY}
    runs["config"] = runs.config.map(without_budget)
    runs["config_id"] = runs.config.map(config_id)
    return runs, evals, left_out


class Comparison:
    def __init__(self, runs: pd.DataFrame, evals: pd.DataFrame | None = None, select: str = "final",
                 failed: str = "worst", at: int | None = None):
        if select not in SELECTIONS:
            raise ValueError(f"select={select!r}; valid: {', '.join(SELECTIONS)}")
        if failed not in FAILED_POLICIES:
            raise ValueError(f"failed={failed!r}; valid: {', '.join(FAILED_POLICIES)}")
        if at is not None and at < 1:
            raise ValueError(f"at={at}: a generator update, >= 1")
        self.select, self.failed, self.at = select, failed, at
        self.evals = evals if evals is not None else pd.DataFrame(columns=["run_dir", "iteration", "metric", "value"])
        self.left_out = runs.iloc[:0]
        if at is not None:
            runs, self.evals, self.left_out = stopped_at(runs, self.evals, at)
        self.runs, self.duplicates = self._deduplicated(runs)
        self.labels = self._label()

    # ------------------------------------------------------------ identity and labels
    @staticmethod
    def _deduplicated(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One record per (configuration, seed): the most finished, then the furthest along."""
        order = runs.assign(_rank=runs.status.map(STATUS_RANK).fillna(9),
                            _iteration=pd.to_numeric(runs.iteration, errors="coerce").fillna(-1))
        order = order.sort_values(["_rank", "_iteration", "run_dir"], ascending=[True, False, True])
        first = ~order.duplicated(["config_id", "seed"])
        kept = order[first].drop(columns=["_rank", "_iteration"]).sort_values("run_dir").reset_index(drop=True)
        return kept, order[~first].drop(columns=["_rank", "_iteration"])

    def _label(self) -> Labels:
        runs = self.runs
        configs = list(runs.config)
        varying = _varying(configs)
        all_keys = sorted(set().union(*configs)) if configs else []
        common = {k: configs[0].get(k) for k in all_keys if k not in varying}
        context_keys = [k for k in varying if not _is_method_key(k) and not _is_setting_key(k)]
        loss_varies = any(k.startswith("loss.") for k in varying)

        def method(config: dict, peers: list[dict]) -> str:
            own = [k for k in _varying(peers) if k.startswith("regularizer.") and k != "regularizer.name"]
            text = str(config.get("regularizer.name"))
            if own:
                text += " (" + ", ".join(f"{k.split('.', 1)[1]}={_value_text(config.get(k))}" for k in own) + ")"
            if loss_varies:
                text += f" [{config.get('loss.name')}]"
            return text

        def setting(config: dict, peers: list[dict]) -> str:
            own = [k for k in _varying(peers) if _is_setting_key(k) and k != "setting.name"]
            text = str(config.get("setting.name"))
            return text + ("" if not own else " " + ",".join(
                f"{k.split('.', 1)[1]}={_value_text(config.get(k))}" for k in own))

        # a method or setting is labelled by what varies among its peers IN ITS CONTEXT: setting D at
        # n_dis 1-20 in a Figure 11 context does not rename setting D in the contexts beside it
        contexts = [", ".join(f"{k}={_value_text(c.get(k))}" for k in context_keys) or "all runs" for c in configs]
        by_reg, by_setting = {}, {}
        for c, context in zip(configs, contexts, strict=True):
            by_reg.setdefault((context, c.get("regularizer.name")), []).append(c)
            by_setting.setdefault((context, c.get("setting.name")), []).append(c)
        runs["method"] = [method(c, by_reg[x, c.get("regularizer.name")]) for c, x in zip(configs, contexts, strict=True)]
        runs["setting_label"] = [setting(c, by_setting[x, c.get("setting.name")])
                                 for c, x in zip(configs, contexts, strict=True)]
        runs["context"] = contexts
        return Labels(context_keys, common)

    def caption(self) -> str:
        """The keys every run shares, said once (figures label only what varies), with the evaluator's
        weights where it has any: a number means something only beside what measured it."""
        keep = ("dataset.name", "model.name", "model.width", "loss.name", "budget.iterations", "batch_size",
                "setting.name", "regularizer.name")
        shown = {k: v for k, v in self.labels.common.items() if k in keep or k.startswith("evaluator.")}
        return ", ".join(f"{k}={_value_text(v)}" for k, v in shown.items())

    # ------------------------------------------------------------ per-seed values
    def metrics(self) -> list[str]:
        """The metric columns present that a kind of the contract claims (`_std` companions left out)."""
        valueless = set().union(*self.runs.null_metrics) if "null_metrics" in self.runs else set()
        return sorted(c for c in self.runs.columns if not c.endswith("_std") and metric_kind(c) is not None
                      and (pd.to_numeric(self.runs[c], errors="coerce").notna().any() or c in valueless))

    def primary(self, context: str | None = None) -> str | None:
        runs = self.runs if context is None else self.runs[self.runs.context == context]
        present = [m for m in self.metrics() if m in runs]
        return primary_metric(present)

    def _best_during_training(self, metric: str) -> pd.Series:
        rows = self.evals[self.evals.metric == metric]
        values = pd.to_numeric(rows.value, errors="coerce")
        grouped = values.groupby(rows.run_dir)
        return grouped.max() if metric_kind(metric).higher_is_better else grouped.min()

    def seed_values(self, metric: str) -> pd.DataFrame:
        """One row per finished seed: `value` after the failure policy, `outcome` (completed |
        diverged | failed | no value), and the IS split std where the metric has one."""
        runs = self.runs[self.runs.status.isin(ENDED)].copy()
        if metric in runs:
            raw = pd.to_numeric(runs[metric], errors="coerce")
        else:
            raw = pd.Series(np.nan, index=runs.index)
        if self.select == "best":
            raw = runs.run_dir.map(self._best_during_training(metric)).astype(float)
        nulls = runs.null_metrics.map(lambda names: metric in names) if "null_metrics" in runs else False
        runs["outcome"] = runs.status
        runs.loc[(runs.status == COMPLETED) & nulls & raw.isna(), "outcome"] = "no value"
        evaluated = runs.outcome != COMPLETED
        evaluated |= raw.notna()
        runs = runs[evaluated]  # completed runs never evaluated under this protocol are not part of it
        raw = raw[evaluated]
        bad = runs.outcome != COMPLETED
        runs["split_std"] = pd.to_numeric(runs[f"{metric}_std"], errors="coerce") if f"{metric}_std" in runs \
            else np.nan
        if self.failed == "exclude":
            runs["value"] = raw.where(~bad)
        else:
            runs["value"] = raw.where(~bad, runs.context.map(self._worst(metric, runs.assign(value=raw.where(~bad)))))
        runs["imputed"] = bad & (self.failed == "worst")
        return runs

    @staticmethod
    def _worst(metric: str, runs: pd.DataFrame) -> dict:
        kind = metric_kind(metric)
        worst = {}
        for context, part in runs.groupby("context"):
            observed = part.value.dropna()
            if kind.worst is not None:
                worst[context] = kind.worst
            elif len(observed):
                worst[context] = observed.min() if kind.higher_is_better else observed.max()
            else:
                worst[context] = math.nan
        return worst

    # ------------------------------------------------------------ tables
    def summary(self, metric: str) -> pd.DataFrame:
        """One row per configuration (context, method, setting): seeds run / completed /
        diverged / failed / without a value, mean over the scored seeds and its 95% interval."""
        values = self.seed_values(metric)
        every = self.runs
        rows = []
        for (context, method, setting), group in every.groupby(["context", "method", "setting_label"], sort=True):
            scored = values[(values.context == context) & (values.method == method)
                            & (values.setting_label == setting)]
            kept = scored.value.dropna()
            low, high = bootstrap_ci(kept)
            first = group.config.iloc[0]
            rows.append({
                "context": context, "method": method, "setting": setting,
                **{column: first.get(key) for column, key in DESCRIBING.items()},
                "seeds": len(group), COMPLETED: int((scored.outcome == COMPLETED).sum()),
                DIVERGED: int((group.status == DIVERGED).sum()), FAILED: int((group.status == FAILED).sum()),
                "no_value": int((scored.outcome == "no value").sum()),
                "unfinished": int((~group.status.isin(ENDED)).sum()),
                "n": len(kept), "mean": kept.mean() if len(kept) else math.nan, "ci_low": low, "ci_high": high,
                "split_std": float(scored.split_std.iloc[0]) if len(kept) == 1 and scored.split_std.notna().any()
                else math.nan,
            })
        return pd.DataFrame(rows, columns=["context", "method", "setting", *DESCRIBING, "seeds", COMPLETED, DIVERGED, FAILED,
                                           "no_value", "unfinished", "n", "mean", "ci_low", "ci_high", "split_std"])

    def best_settings(self, metric: str) -> pd.DataFrame:
        """Per (context, method): the setting with the best mean (failures counted by the policy),
        among the method's settings measured with two seeds or more that ended (completed, diverged or
        failed; where none has two, those with the most): a partly run grid never crowns a one-seed
        setting (the luckiest draw of one, without an interval) over one measured with several seeds,
        and a third seed added to one setting does not hide the method's other settings. A tie goes to
        the earlier setting (A-F order)."""
        return self._extreme_settings(metric, worst=False)

    def worst_settings(self, metric: str) -> pd.DataFrame:
        """Per (context, method): the setting with the worst mean, by the same rules (a tie goes to
        the earlier setting too: ring8's DRAGAN has KL 2.0794 under both B and C, and B is named)."""
        return self._extreme_settings(metric, worst=True)

    def _extreme_settings(self, metric: str, worst: bool) -> pd.DataFrame:
        table = self.summary(metric)
        first_is_higher = metric_kind(metric).higher_is_better != worst
        rows = []
        for _, group in table.groupby(["context", "method"], sort=True):
            scored = group.dropna(subset=["mean"])
            ended = scored.seeds - scored.unfinished
            scored = scored[ended >= min(ended.max(), 2)]
            if scored.empty:
                rows.append(group.iloc[0].to_dict() | {"setting": None, "mean": math.nan, "n": 0})
                continue
            order = sorted(scored.index, key=lambda i: (-scored.at[i, "mean"] if first_is_higher else scored.at[i, "mean"],
                                                        _setting_order(scored.at[i, "setting"])))
            rows.append(table.loc[order[0]].to_dict())
        return pd.DataFrame(rows, columns=table.columns)

    def policy_text(self, metric: str | None = None) -> str:
        what = {"final": "the final evaluation of each run", "best": "each run's best evaluation during training"}
        if self.at is not None:
            what = {"final": f"each run's evaluation at generator update {self.at}",
                    "best": f"each run's best evaluation up to generator update {self.at}"}
            left = f" ({len(self.left_out)} run(s) with a shorter budget left out)" if len(self.left_out) else ""
            what = {k: v + left for k, v in what.items()}
        failed = ("a diverged or failed seed, or one whose metric has no value, counts as the worst value of its "
                  "metric (its worst possible value where there is one, else the worst any run of the same "
                  "context reached)" if self.failed == "worst" else
                  "diverged, failed and valueless seeds are left out of the means (counted, not scored)")
        return (f"Scores: {what[self.select]}, with G in eval mode. Failures: {failed}. Intervals: 95% "
                f"percentile bootstrap of the mean over seeds ({BOOTSTRAP_RESAMPLES} resamples); with one seed "
                f"none, and the IS split std where there is one. A method's best setting is chosen among its "
                f"settings with two seeds or more that ended (where none has two, those with the most); a tie goes "
                f"to the earlier setting.")

    # ------------------------------------------------------------ runs behind the figures
    def best_run(self, context: str, method: str, metric: str | None, setting: str | None = None) -> str | None:
        """The method's run to draw: at `setting` (else its best setting by `metric`), the seed
        with the best `metric` (lowest seed without one)."""
        runs = self.runs[(self.runs.context == context) & (self.runs.method == method)
                         & self.runs.status.isin(FINISHED)]
        if runs.empty:
            return None
        if setting is None and metric is not None:
            best = self.best_settings(metric)
            best = best[(best.context == context) & (best.method == method)].setting
            setting = best.iloc[0] if len(best) and isinstance(best.iloc[0], str) else None
        if setting is not None:
            if not (runs.setting_label == setting).any():
                return None
            runs = runs[runs.setting_label == setting]
        if metric is not None and metric in runs and pd.to_numeric(runs[metric], errors="coerce").notna().any():
            values = pd.to_numeric(runs[metric], errors="coerce")
            index = values.idxmax() if metric_kind(metric).higher_is_better else values.idxmin()
            return runs.loc[index, "run_dir"]
        return runs.sort_values(["seed", "run_dir"]).run_dir.iloc[0]

    def representative_runs(self, context: str, metric: str | None, setting: str | None = None) -> dict[str, str]:
        """Each method's run to draw in `context`: its best seed at its best setting by `metric` (the
        SN paper's Figure 3 takes each method's IS-best setting), or at `setting` (Figure 9: C)."""
        chosen = {}
        for method in self.methods(context):
            run = self.best_run(context, method, metric, setting)
            if run is not None:
                chosen[method] = run
        return chosen

    def drawn_runs(self) -> dict[str, dict[str, str]]:
        """Per context, the runs whose final spectra and samples the report draws: each method's
        representative run by the context's primary metric. A shipped reference keeps the sample
        images of these runs only (analysis.ship)."""
        return {context: self.representative_runs(context, self.primary(context)) for context in self.contexts()}

    def ends_past_at(self, run_dirs) -> dict[str, int]:
        """Of `run_dirs`, those that trained past the scored update, with their budget: a record keeps
        only its last spectra and samples, so what these runs draw comes from later than the tables."""
        if self.at is None:
            return {}
        planned = self.runs.set_index("run_dir").iterations_planned.astype(float)
        return {d: int(planned[d]) for d in run_dirs if planned[d] > self.at}

    def sigma_over_training(self, run_dirs) -> pd.DataFrame:
        """analysis.collect.sigma_over_training, up to the generator update the runs are scored at."""
        sigma = sigma_over_training(run_dirs)
        return sigma if self.at is None else sigma[sigma.iteration <= self.at]

    def contexts(self) -> list[str]:
        return ordered_contexts(self.runs.context)

    def methods(self, context: str | None = None) -> list[str]:
        runs = self.runs if context is None else self.runs[self.runs.context == context]
        return sorted(runs.method.unique())

    def settings(self, context: str | None = None) -> list[str]:
        runs = self.runs if context is None else self.runs[self.runs.context == context]
        return sorted(runs.setting_label.unique(), key=_setting_order)


def ordered_contexts(contexts) -> list[str]:
    """The distinct contexts, their numbers in numeric order (panel_order)."""
    return sorted(set(contexts), key=lambda context: panel_order(context, ""))


def panel_order(context: str, setting: str) -> tuple:
    """Contexts with their numbers in numeric order (budget 5000 before 10000), then settings A-F
    with n_dis-style variants in numeric order: how figures and tables lay out configurations."""
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", context)]
    return (natural, _setting_order(setting))


def _setting_order(label: str):
    """A-F, then opt, with n_dis-style variants in numeric order."""
    name, _, rest = label.partition(" ")
    numbers = [float(x) for x in re.findall(r"=(-?[\d.e+-]+)", rest) if _is_number(x)]
    return (name, numbers, rest)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
