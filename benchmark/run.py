"""Entry point: `python benchmark/run.py regularizer=sn setting=B [group=option ...]`.

Thin on purpose: Hydra composes conf/, `train` does the rest. Bad input
(invalid values, missing data, an unusable checkpoint) prints one clear
message and exits with status 2; a crash during training leaves result.json
with status `failed` and exits 1; a diverged run is a result (exit 0). In a
sweep (-m) a bad or failed run is recorded as failed and the others go on.
A run whose result.json says it finished (completed or diverged) with the
same budget is not run again.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from benchmark.checkpoint import CheckpointError, fingerprint  # noqa: E402
from benchmark.config import ConfigError  # noqa: E402
from benchmark.contract import config_id  # noqa: E402
from benchmark.data import DatasetNotFoundError  # noqa: E402
from benchmark.evaluation import EvaluationSetupError  # noqa: E402
from benchmark.results import SCHEMA, write_json  # noqa: E402

BAD_INPUT = (ConfigError, DatasetNotFoundError, CheckpointError, EvaluationSetupError)
FINISHED = ("completed", "diverged")


def finished_result(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The run's result.json if it already finished this budget, else None."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("schema") != SCHEMA:
        raise ConfigError(f"{path} has schema {result.get('schema')!r}; this code writes schema {SCHEMA}. "
                          f"Results of different schemas are never mixed: move the directory away or rerun elsewhere")
    if result.get("status") not in FINISHED or result.get("iterations_planned") != cfg.budget.iterations:
        return None
    if fingerprint(OmegaConf.create(result["config"])) != fingerprint(cfg):
        raise CheckpointError(f"{path} was written by a different config (the config files changed since?); "
                              f"it was left in place: move it away to run this configuration here")
    return result


def _index_entry(cfg: DictConfig, run_dir: Path) -> Path:
    """Where a finished run is recorded by its configuration, beside its siblings: the same
    configuration typed another way (a default spelled out, groups in another order) gets
    another directory name from Hydra, but the same entry here."""
    key = f"{config_id(OmegaConf.to_container(cfg, resolve=True))}-seed{cfg.seed}-{cfg.budget.iterations}"
    return run_dir.parent / ".finished" / f"{key}.json"


def finished_elsewhere(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The result of this configuration, seed and budget if a sibling directory finished it."""
    entry = _index_entry(cfg, run_dir)
    if not entry.is_file():
        return None
    other = run_dir.parent / json.loads(entry.read_text())["run"]
    if other == run_dir or not (other / "result.json").is_file():
        return None
    result = json.loads((other / "result.json").read_text())
    return {**result, "same_as": str(other)} if result.get("status") in FINISHED else None


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    done = finished_result(cfg, run_dir) or finished_elsewhere(cfg, run_dir)
    if done is not None:
        return {**done, "skipped": True}
    from benchmark.trainer import Trainer
    result = Trainer(cfg, run_dir).fit()
    if result["status"] in FINISHED:
        write_json(_index_entry(cfg, run_dir), {"run": run_dir.name})
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        result = train(cfg, run_dir)
    except Exception as err:
        bad_input = isinstance(err, BAD_INPUT)
        if not in_sweep:
            if bad_input:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(2)
            raise
        # In a sweep the failure is a result and the other runs go on.
        print(f"error: the run in {run_dir} failed: {type(err).__name__}: {err}", file=sys.stderr)
        if not (run_dir / "result.json").exists():  # the trainer writes its own; never overwrite a record
            write_json(run_dir / "result.json", {
                "schema": SCHEMA, "status": "failed", "iteration": 0, "error": f"{type(err).__name__}: {err}",
                "traceback": None if bad_input else traceback.format_exc(),
                "config": OmegaConf.to_container(cfg, resolve=True)})
        return
    state = "already finished" if result.get("skipped") else "done"
    if result.get("same_as"):
        state = f"the same configuration already finished in {result['same_as']}"
    print(f"{result['status']} ({state}): {result['iteration']}/{result.get('iterations_planned')} generator "
          f"updates, run directory {run_dir}")


if __name__ == "__main__":
    main()
