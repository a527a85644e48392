"""Evaluate a finished run again, under any protocol, or score real data against itself.

    python -m benchmark.evaluate RUN_DIR [--metrics fid50k_train,is50k_10splits] [--device cuda]
    python -m benchmark.evaluate --real cifar10 [--split train|test] [--metrics is50k_10splits,fid5k_10k] [key=value ...]

With RUN_DIR, G is rebuilt from the run's config and checkpoint.pt, and the
new values are merged into its result.json (atomically); measured with other
weights than the record's (eval.classifier=...), they replace that feature
space's old numbers, and the record names the new weights. With --real, real
images take G's place: by default the training set, as the paper's "real data"
row of Table 2 is (CIFAR-10's 50k training images give IS 11.24); `--split
test` scores the held-out split instead (CIFAR-10 / Fashion-MNIST test set,
STL-10 test set, fresh points for mixtures).
Extra key=value arguments are Hydra overrides of the config (eval.cache_root=..., data_root=...).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmark.checkpoint import CheckpointError, load_failure
from benchmark.config import ConfigError, compose_config, resolve_device
from benchmark.contract import CHECKPOINT_FILE, HYDRA_CONFIG, RESULT_FILE, metric_space, read_json
from benchmark.data import DatasetError, load_dataset
from benchmark.evaluation import EvaluationSetupError, Evaluator
from benchmark.models import build_models
from benchmark.results import SCHEMA, write_json
from benchmark.run_lock import RunDirBusyError, RunDirUnwritableError, locked

BAD_INPUT = (ConfigError, DatasetError, CheckpointError, EvaluationSetupError, FileNotFoundError, RunDirBusyError,
             RunDirUnwritableError)


def with_overrides(cfg, metrics: str | None, overrides: list[str]):
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    if metrics:
        cfg.eval.metrics = [m for m in metrics.split(",") if m]
    return cfg


def run_config(run_dir: Path):
    """The resolved config a run was trained with (result.json, else .hydra/config.yaml)."""
    result, hydra_cfg = run_dir / RESULT_FILE, run_dir / HYDRA_CONFIG
    if result.is_file():
        try:
            return OmegaConf.create(read_json(result)["config"])
        except (ValueError, KeyError) as err:  # unreadable, of another schema, or without its config
            if not hydra_cfg.is_file():
                raise CheckpointError(f"{result} cannot be read ({type(err).__name__}: {err}) and there is no "
                                      f"{hydra_cfg} to read the run's config from") from err
    if hydra_cfg.is_file():
        return OmegaConf.load(hydra_cfg)
    raise FileNotFoundError(f"{run_dir} is not a run directory: it has neither {RESULT_FILE} nor {HYDRA_CONFIG}")


def evaluate_run(run_dir: Path, metrics: str | None, device_spec: str, overrides: list[str]) -> dict:
    cfg = with_overrides(run_config(run_dir), metrics, overrides)
    device = resolve_device(device_spec)
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: nothing to evaluate")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a PyTorch file, or holding more than tensors
        raise CheckpointError(f"checkpoint {path} cannot be read ({load_failure(err)})") from err
    train = load_dataset(cfg.dataset, cfg.data_root)
    G, _ = build_models(cfg.model, tuple(train.shape[1:]), cfg.z_dim)
    try:
        G.load_state_dict(state["G"])
    except (RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} does not hold this run's generator "
                              f"({type(err).__name__}: {str(err).splitlines()[0]})") from err
    evaluator = Evaluator(cfg.eval, cfg.dataset, train.to(device), device, cfg.data_root, progress=True)
    values = evaluator.evaluate(G.to(device), cfg.z_dim)
    result_path, result = run_dir / RESULT_FILE, None
    if result_path.is_file():
        try:
            result = read_json(result_path)
        except ValueError as err:  # unreadable, or of another schema
            print(f"warning: {err}: the metrics are printed, not merged into it", file=sys.stderr)
    if result is not None:
        if result.get("iteration") != state["iteration"]:
            print(f"note: the checkpoint is of iteration {state['iteration']}, result.json of "
                  f"{result.get('iteration')} (a diverged run keeps its last good checkpoint)", file=sys.stderr)
        # Numbers of two evaluators never share a record: where the weights of a space changed (or were
        # not recorded), the old numbers of that space go, and the record names the new weights.
        before, now = result.get("evaluator") or {}, evaluator.identity
        changed = {space for space in now if before.get(space) != now[space]}
        dropped = sorted(k for k in result.get("metrics", {}) if metric_space(k) in changed and k not in values)
        if dropped:
            print(f"note: {', '.join(dropped)} dropped from {result_path}: measured with other weights than "
                  f"{', '.join(now[s] for s in sorted(changed))}", file=sys.stderr)
        kept = {k: v for k, v in result.get("metrics", {}).items() if k not in dropped}
        result["metrics"] = {**kept, **values}
        result["evaluator"] = {**before, **now}
        result["metrics_iteration"] = state["iteration"]
        write_json(result_path, result)
    return {"iteration": state["iteration"], "metrics": values}


def evaluate_real(dataset: str, metrics: str | None, device_spec: str, overrides: list[str],
                  split: str = "train") -> dict:
    cfg = compose_config([f"dataset={dataset}", *overrides])
    cfg = with_overrides(cfg, metrics, [])
    device = resolve_device(device_spec)
    train = load_dataset(cfg.dataset, cfg.data_root)
    scored = train if split == "train" else load_dataset(cfg.dataset, cfg.data_root, train=False)
    evaluator = Evaluator(cfg.eval, cfg.dataset, train.to(device), device, cfg.data_root, progress=True)
    return {"dataset": dataset, "split": split, "samples": len(scored), "metrics": evaluator.evaluate(samples=scored)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmark.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", type=Path, help="a run directory with checkpoint.pt")
    p.add_argument("--real", metavar="DATASET", help="score DATASET's real images instead of a run")
    p.add_argument("--split", choices=("train", "test"), default="train",
                   help="with --real: the training set (the paper's real-data row, default) or the held-out split")
    p.add_argument("--metrics", help="comma-separated metric names (default: the config's eval.metrics)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="with --real: where the JSON goes (default outputs/real/<dataset>.json)")
    args, overrides = p.parse_known_args(argv)
    if (args.run_dir is None) == (args.real is None):
        p.error("give a RUN_DIR or --real DATASET (one of them)")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)} (overrides are key=value)")
    try:
        if args.real:
            report = {"schema": SCHEMA, **evaluate_real(args.real, args.metrics, args.device, overrides, args.split)}
            out = args.out or Path("outputs") / "real" / f"{args.real}.json"
            write_json(out, report)
        else:
            if not args.run_dir.is_dir():
                raise FileNotFoundError(f"{args.run_dir} is not a run directory (no such folder)")
            with locked(args.run_dir):  # result.json is rewritten: never while a run writes it
                report = evaluate_run(args.run_dir, args.metrics, args.device, overrides)
    except BAD_INPUT as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
