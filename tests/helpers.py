"""What several test files share (fixtures live in conftest.py, which imports these)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmark" / "run.py"

# A tiny image configuration: the standard CNN at 1/16 width on 32px Fashion-MNIST-format data.
TINY_IMAGES = ["dataset=fashion_mnist", "model.width=0.0625", "batch_size=16", "progress=false"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python benchmark/run.py ARGS` as a user runs it."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(RUN), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
