"""Entry point: `python benchmark/run.py regularizer=sn setting=B [group=option ...]`.

Thin on purpose: Hydra composes conf/, `train` does the rest. Bad input
(invalid values, missing data, an unusable checkpoint) prints one clear
message and exits with status 2; a crash during training leaves result.json
with status `failed`; a diverged run is a result (exit 0).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from benchmark.checkpoint import CheckpointError  # noqa: E402
from benchmark.config import ConfigError  # noqa: E402
from benchmark.data import DatasetNotFoundError  # noqa: E402
from benchmark.evaluation import EvaluationSetupError  # noqa: E402

BAD_INPUT = (ConfigError, DatasetNotFoundError, CheckpointError, EvaluationSetupError)


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    from benchmark.trainer import Trainer
    return Trainer(cfg, run_dir).fit()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        result = train(cfg, run_dir)
    except BAD_INPUT as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"{result['status']}: {result['iteration']}/{result['iterations_planned']} generator updates, "
          f"run directory {run_dir}")


if __name__ == "__main__":
    main()
