"""The run directory's files (the one contract between training and analysis):
metrics.jsonl (one object per logging interval), result.json (the final record)
and spectra.json (singular values of D's effective weights at the end).
All of them carry `schema`, and whole files are written atomically."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from benchmark.contract import SCHEMA  # noqa: F401  (the writers import it from here)
from regularizers import as_matrix, weight_layers

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write) -> None:
    """Write through `write(tmp_path)` into a temp file beside `path`, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n"))


def append_jsonl(path: Path, obj) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, allow_nan=True) + "\n")


class ResultsFileError(ValueError):
    """A results file that cannot be read (damaged inside, not just torn at the end); names the file."""


def _jsonl_rows(path: Path) -> tuple[list[dict], bool]:
    """The rows of a JSONL file and whether its last line was torn (cut mid-write: metrics.jsonl is
    appended, not replaced, so a killed run or a full disk can leave half a line)."""
    path = Path(path)
    if not path.exists():
        return [], False
    lines = path.read_text(errors="replace").split("\n")
    complete, tail = lines[:-1], lines[-1]  # a file that ends with a newline has an empty tail
    rows = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as err:
            if number == len(complete) and not tail.strip():  # the last line, cut before its end
                return rows, True
            raise ResultsFileError(f"{path}, line {number}, cannot be read ({err}); it is damaged inside, "
                                   f"not just cut at its end: move it away") from err
    if tail.strip():
        try:
            rows.append(json.loads(tail))
        except ValueError:
            return rows, True
    return rows, False


def read_jsonl(path: Path) -> list[dict]:
    """Every row of a JSONL file; a torn last line is skipped with a warning naming the file."""
    rows, torn = _jsonl_rows(path)
    if torn:
        warnings.warn(f"{path}: its last line is torn (cut mid-write) and was skipped", stacklevel=2)
    return rows


def truncate_jsonl(path: Path, last_iteration: int) -> None:
    """Drop rows logged after `last_iteration` (written after the checkpoint a run resumes from),
    and a torn last line."""
    rows, torn = _jsonl_rows(path)
    kept = [r for r in rows if r.get("iteration", 0) <= last_iteration]
    if torn or len(kept) != len(rows):
        write_atomic(path, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in kept)))


@torch.no_grad()
def _svdvals(weight: torch.Tensor) -> torch.Tensor:
    W = as_matrix(weight.detach()).float()
    if not torch.isfinite(W).all():  # a diverged layer: the SVD would raise
        return torch.full((min(W.shape),), float("nan"))
    return torch.linalg.svdvals(W).cpu()


def singular_values(D: nn.Module) -> dict[str, torch.Tensor]:
    """Exact singular values (descending) of each layer's effective weight as a matrix."""
    return {name: _svdvals(layer.weight) for name, layer in weight_layers(D)}


def spectral_norms(D: nn.Module) -> dict[str, float]:
    """Exact largest singular value of each layer's effective weight (NaN if diverged)."""
    return {name: float(sv[0]) for name, sv in singular_values(D).items()}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device) -> dict:
    versions = {}
    for package in ("torch", "torchvision", "hydra-core", "omegaconf", "numpy", "torch-fidelity"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": git_commit(),
        "host": platform.node(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
    }
