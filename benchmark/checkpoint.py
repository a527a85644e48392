"""Atomic checkpoints and their checks. A checkpoint that cannot be read or was
written by a different config is an error that names the file; the file is
never overwritten or silently ignored."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmark.contract import PLACEMENT_KEYS, READABLE_SCHEMAS, flatten
from benchmark.results import SCHEMA, write_atomic

# Keys that may change between a run and its resumption: they change how long,
# where and how fast it runs, or what is measured, not what it trains (TF32 does
# change what is computed, so it must match).
RESUMABLE_CHANGES = ("budget", "eval", "diagnostics", "logger", *PLACEMENT_KEYS)


class CheckpointError(RuntimeError):
    pass


def fingerprint(cfg) -> dict:
    """The flat config keys that must match for a checkpoint to be resumed."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items()
            if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_CHANGES)}


def load_failure(err: Exception) -> str:
    """torch.load's error in one line, without its advice to retry with weights_only=False
    (which would run whatever code the file holds)."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in text:
        refused = next((line.strip() for line in text.splitlines() if "unsupported" in line.lower()), "")
        return f"it holds objects other than tensors and plain containers{': ' + refused if refused else ''}"
    if isinstance(err, KeyError):  # the unpickler met bytes that are no pickle opcode
        return "not a PyTorch file"
    return f"{type(err).__name__}: {text.split('. ')[0] if text else 'no detail'}"


def save(path: Path, state: dict) -> None:
    write_atomic(path, lambda tmp: torch.save({"schema": SCHEMA, **state}, tmp))


def load(path: Path, cfg) -> dict:
    advice = "it was left in place: move it away (or choose another run directory) to start this run afresh"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({load_failure(err)}); {advice}") from err
    if not isinstance(state, dict) or state.get("schema") not in READABLE_SCHEMAS:
        found = state.get("schema") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has schema {found!r}, this code reads schema {SCHEMA}; {advice}")
    expected, found = fingerprint(cfg), state.get("fingerprint", {})
    differing = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {found.get(k)!r} vs now {expected.get(k)!r}" for k in differing[:8])
        raise CheckpointError(f"checkpoint {path} was written by a different config ({detail}); {advice}")
    return state
