"""Writing the run directory's files (benchmark/contract.py names them and reads them):
metrics.jsonl (one object per logging interval), result.json (the final record)
and spectra.json (singular values of D's effective weights at the end).
All of them carry `schema`, and whole files are written atomically."""
from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

# the writers import SCHEMA and write_atomic from here
from benchmark.contract import SCHEMA, jsonl_rows, write_atomic  # noqa: F401
from regularizers import as_matrix, weight_layers


def write_json(path: Path, obj) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n"))


def append_jsonl(path: Path, obj) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, allow_nan=True) + "\n")


def truncate_jsonl(path: Path, last_iteration: int) -> None:
    """Drop rows logged after `last_iteration` (written after the checkpoint a run resumes from),
    and a torn last line."""
    rows, torn = jsonl_rows(path)
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


def cpu_description() -> dict:
    """The CPU's model and vector extensions, and the kernel set torch picked on it: on another CPU
    (AVX2 against AVX-512, say) float sums are ordered otherwise, so a run follows another trajectory."""
    model, flags = platform.processor() or None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux: the model from platform, no flags
        pass
    vector = sorted(f for f in flags if f.startswith(("sse4", "avx", "amx")) or f in ("fma", "f16c"))
    return {"model": model, "vector_extensions": vector,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


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
        "cpu": cpu_description(),
    }
