"""Sweep directories -> tidy pandas DataFrames (reads result files only; never the trainer).

    runs, evals = collect(["multirun/local_grid"])

`runs`: one row per run directory (benchmark.contract.run_dirs): its status
(benchmark.contract.STATUSES, as sweep-status says it),
the config keys that tell runs apart, cost, final losses and one column per
final metric, named by its protocol (`fid5k_10k`, `mixture10k_modes`, ...).
`config` holds the run's identity (benchmark.contract.identity: every resolved key
but the seed and placement) and `config_id` its digest; `null_metrics` the metrics
that were evaluated but have no value (mixture KL when no sample is good).
`evals`: one row per (run, evaluation, metric) from metrics.jsonl, long form.
`sigma_over_training`: one row per (run, logged iteration, D layer).

One run whose files cannot be read (a torn result.json, a damaged log) never blocks
the others: it is named in a warning and set aside (`runs.attrs["set_aside"]`:
run directory -> reason); relaunching the sweep runs it again. A torn last line of
metrics.jsonl (it is appended, so a killed run can leave half a line) is skipped
with a warning naming the file.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from benchmark.contract import (
    HYDRA_CONFIG,
    METRICS_FILE,
    RESULT_FILE,
    SPECTRA_FILE,
    UNREADABLE,
    ResultsFileError,
    SchemaError,
    config_id,
    identity,
    metric_kind,
    read_json,
    read_jsonl,
    run_dirs,
    run_status,
    write_atomic,
)

# Config keys that identify a run in tables and figures: (column, path in the config).
KEYS = (("dataset", "dataset.name"), ("model", "model.name"), ("width", "model.width"),
        ("regularizer", "regularizer.name"), ("loss", "loss.name"), ("setting", "setting.name"),
        ("lr", "setting.lr"), ("beta1", "setting.beta1"), ("beta2", "setting.beta2"),
        ("n_dis", "setting.n_dis"), ("seed", "seed"), ("batch_size", "batch_size"))


# One name for "this run's file cannot be read" on both sides (benchmark/contract.py).
UnreadableRunError = ResultsFileError


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: expected a sweep directory (e.g. multirun/local_grid) "
                                    f"or a run directory (with {RESULT_FILE} or {HYDRA_CONFIG})")
        found.update(run_dirs(path))
    if not found:
        raise FileNotFoundError(f"no run directories under {', '.join(map(str, paths))}: expected folders with "
                                f"{RESULT_FILE} or {HYDRA_CONFIG} (a sweep made by `make sweep`)")
    return sorted(found)


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def read_bench(path: Path) -> pd.DataFrame:
    """`make bench`'s JSON as one row per (variant, regularizer), with the device it ran on."""
    report = read_json(path)
    if "variants" not in report:
        raise SchemaError(f"{path} was written by an older make bench (no variants); run make bench again")
    env = report["environment"]
    rows = [{"variant": variant, "regularizer": name, "device": env["device"], "device_name": env["device_name"],
             **{k: v for k, v in row.items() if k != "samples"}}
            for variant, results in report["results"].items() for name, row in results.items()]
    return pd.DataFrame(rows)


def run_record(run_dir: Path) -> dict:
    """One row of `runs`; its status is benchmark.contract.run_status's (sweep-status says the same)."""
    state = run_status(run_dir)
    if state["status"] == UNREADABLE:
        raise UnreadableRunError(state["error"])
    result = state["result"]
    if result is not None and "config" in result:
        cfg = result["config"]
    else:  # in progress: the composed config Hydra saved
        hydra_config = run_dir / HYDRA_CONFIG
        try:
            cfg = _resolved(yaml.safe_load(hydra_config.read_text()))
        except (OSError, yaml.YAMLError) as err:
            raise UnreadableRunError(f"{hydra_config} cannot be read ({type(err).__name__})") from err
    rows = read_jsonl(run_dir / METRICS_FILE)
    status = state["status"]
    # The evaluator's weights belong to what a number means: runs measured with two classifiers
    # are two configurations (two contexts in every table), never pooled. Records from before it
    # was written have none: they stay comparable with each other only.
    evaluator = (result or {}).get("evaluator") or next((r["evaluator"] for r in reversed(rows) if "evaluator" in r), {})
    measured = {**cfg, "evaluator": evaluator}
    record = {"run_dir": str(run_dir), "run": run_dir.name, "status": status,
              "config": identity(measured), "config_id": config_id(measured)}
    record.update({column: _get(cfg, path) for column, path in KEYS})
    result = result or {}
    last_log = next((r for r in reversed(rows) if "d_loss" in r), {})
    record.update({
        "iteration": result.get("iteration", last_log.get("iteration")),
        "iterations_planned": result.get("iterations_planned", _get(cfg, "budget.iterations")),
        "diverged_at": result.get("diverged_at"),
        "error": result.get("error"),
        "seconds_per_generator_update": result.get("seconds_per_generator_update"),
        "train_seconds": result.get("train_seconds", last_log.get("seconds")),
        "d_loss": (result.get("final") or last_log).get("d_loss"),
        "g_loss": (result.get("final") or last_log).get("g_loss"),
        "max_spectral_norm": max((v for v in (result.get("spectral_norms") or {}).values() if v is not None),
                                 default=None),
    })
    metrics = result.get("metrics") or next((r["metrics"] for r in reversed(rows) if "metrics" in r), {})
    record.update(metrics)
    record["null_metrics"] = tuple(sorted(k for k, v in metrics.items() if v is None))
    return record


def _resolved(cfg: dict) -> dict:
    """Interpolations resolved where they can be (${eval.smoke_metrics}); left as written where not."""
    try:
        return OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
    except Exception:  # e.g. a resolver only the training process registers
        return cfg


def collect(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, run_dirs, set_aside = [], [], {}
    for d in find_runs(paths):
        if not any((d / name).is_file() for name in (RESULT_FILE, HYDRA_CONFIG)):
            continue  # it has just taken its lock: nothing to show yet (sweep-status lists it)
        try:
            records.append(run_record(d))
            run_dirs.append(d)
        except UnreadableRunError as err:
            set_aside[str(d)] = str(err)
            warnings.warn(f"run {d} set aside: {err}; relaunching its sweep runs it again", stacklevel=2)
    _place_unmeasured(records)
    runs = pd.DataFrame(records)
    runs.attrs["set_aside"] = set_aside
    evals = []
    for d, row in zip(run_dirs, runs.itertuples(index=False), strict=True):
        for r in read_jsonl(d / METRICS_FILE):
            for name, value in (r.get("metrics") or {}).items():
                evals.append({"run_dir": str(d), "regularizer": row.regularizer, "setting": row.setting,
                              "seed": row.seed, "dataset": row.dataset, "iteration": r["iteration"],
                              "seconds": r.get("seconds"), "metric": name, "value": value})
    return runs, pd.DataFrame(evals, columns=["run_dir", "regularizer", "setting", "seed", "dataset", "iteration",
                                              "seconds", "metric", "value"])


def _place_unmeasured(records: list[dict]) -> None:
    """A run that has measured nothing yet (started, not evaluated) names no evaluator; where every
    measured run names the same one, it joins them, rather than becoming a context of its own in a
    report made while the sweep runs. It brings no number, so nothing of two evaluators is pooled."""
    def evaluator(record: dict) -> dict:
        return {k: v for k, v in record["config"].items() if k.startswith("evaluator.")}

    measured = [r for r in records if any(metric_kind(k) for k in r)]
    found = {tuple(sorted(evaluator(r).items())) for r in measured}
    if len(found) != 1:
        return
    (shared,) = found
    for record in records:
        if record not in measured and not evaluator(record):
            record["config"] = {**record["config"], **dict(shared)}
            record["config_id"] = config_id(record["config"])


def sigma_over_training(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Largest singular value of each D layer at every logged iteration (the SN paper's Figure 9)."""
    rows = []
    for d in map(Path, run_dirs):
        for r in read_jsonl(d / METRICS_FILE):
            for layer, sigma in (r.get("sigma_max") or {}).items():
                rows.append({"run_dir": str(d), "iteration": r["iteration"], "layer": layer, "sigma": sigma})
    return pd.DataFrame(rows, columns=["run_dir", "iteration", "layer", "sigma"])


def write_atomic_text(path: Path, text: str) -> None:
    """An output file whole or not at all: a report interrupted halfway never leaves a half-written
    table behind a complete-looking name."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def final_spectra(run_dir: str | Path) -> dict[str, list[float]]:
    """All singular values of each D layer's effective weight at the end (spectra.json)."""
    path = Path(run_dir) / SPECTRA_FILE
    return read_json(path)["singular_values"] if path.is_file() else {}
