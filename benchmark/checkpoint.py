"""Atomic checkpoints and their checks. A checkpoint that cannot be read or was
written by a different config is an error that names the file; the file is
never overwritten or silently ignored."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmark.results import SCHEMA, write_atomic

# Keys that may change between a run and its resumption: they change how long,
# where and how fast it runs, or what is measured, not what it trains (TF32 does
# change what is computed, so it must match).
RESUMABLE_CHANGES = ("budget", "device", "progress", "data_root", "dataset.download", "eval", "diagnostics",
                     "speed.cudnn_benchmark", "speed.channels_last", "speed.fused_adam", "speed.joint_d_call",
                     "speed.compile")


class CheckpointError(RuntimeError):
    pass


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def fingerprint(cfg) -> dict:
    """The flat config keys that must match for a checkpoint to be resumed."""
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items()
            if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)}


def save(path: Path, state: dict) -> None:
    write_atomic(path, lambda tmp: torch.save({"schema": SCHEMA, **state}, tmp))


def load(path: Path, cfg) -> dict:
    advice = "it was left in place: move it away (or choose another run directory) to start this run afresh"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); {advice}") from err
    if not isinstance(state, dict) or state.get("schema") != SCHEMA:
        found = state.get("schema") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has schema {found!r}, this code reads schema {SCHEMA}; {advice}")
    expected, found = fingerprint(cfg), state.get("fingerprint", {})
    differing = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {found.get(k)!r} vs now {expected.get(k)!r}" for k in differing[:8])
        raise CheckpointError(f"checkpoint {path} was written by a different config ({detail}); {advice}")
    return state
