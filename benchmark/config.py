"""Checks of a composed run config, done before any data is loaded or any
training starts, so that bad input fails fast with the key and value named."""
from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import regularizers
from benchmark.contract import SPEED_SWITCHES
from benchmark.data import VALID_DATASETS
from benchmark.losses import VALID_LOSSES
from benchmark.models import VALID_MODELS
from benchmark.run_logger import problem as logger_problem
from benchmark.speed import COMPILE_MODES

CONF = Path(__file__).resolve().parent.parent / "conf"


LR_DECAYS = ("none", "linear")


class ConfigError(ValueError):
    pass


def compose_config(overrides=(), return_hydra_config: bool = False) -> DictConfig:
    """The run config `python benchmark/run.py OVERRIDES` would get, for the commands and tests
    that need one outside @hydra.main."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def resolve_device(spec: str) -> torch.device:
    """`auto`: the GPU when there is one, else the CPU; `cpu`, `cuda`, `cuda:N` force one."""
    spec = str(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={spec}: no CUDA device is available here; use device=auto or device=cpu")
        index = int(spec[5:]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device={spec}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(spec)
    raise ConfigError(f"device={spec!r} is not valid; valid: auto, cpu, cuda, cuda:N")


def _check(problems: list[str], ok: bool, key: str, value, must: str) -> None:
    if not ok:
        problems.append(f"{key}={value!r}: {must}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate(cfg) -> torch.device:
    """Raise ConfigError naming every bad key; return the device to train on."""
    p: list[str] = []
    s = cfg.setting
    _check(p, isinstance(s.lr, (int, float)) and s.lr > 0, "setting.lr", s.lr, "must be a number > 0")
    for key in ("beta1", "beta2"):
        v = s[key]
        _check(p, isinstance(v, (int, float)) and 0 <= v < 1, f"setting.{key}", v, "must be in [0, 1)")
    _check(p, _is_int(s.n_dis) and s.n_dis >= 1, "setting.n_dis", s.n_dis, "must be an integer >= 1")
    _check(p, s.lr_decay in LR_DECAYS, "setting.lr_decay", s.lr_decay, f"valid: {', '.join(LR_DECAYS)}")
    _check(p, _is_int(s.g_batch_multiplier) and s.g_batch_multiplier >= 1, "setting.g_batch_multiplier",
           s.g_batch_multiplier, "must be an integer >= 1")
    _check(p, _is_int(cfg.batch_size) and cfg.batch_size >= 1, "batch_size", cfg.batch_size, "must be an integer >= 1")
    _check(p, _is_int(cfg.z_dim) and cfg.z_dim >= 1, "z_dim", cfg.z_dim, "must be an integer >= 1")
    _check(p, _is_int(cfg.seed) and cfg.seed >= 0, "seed", cfg.seed, "must be an integer >= 0")
    b = cfg.budget
    for key in ("iterations", "log_every", "checkpoint_every", "sample_every"):
        _check(p, _is_int(b[key]) and b[key] >= 1, f"budget.{key}", b[key], "must be an integer >= 1")
    if not p and b.checkpoint_every % b.log_every:
        p.append(f"budget.checkpoint_every={b.checkpoint_every!r}: must be a multiple of "
                 f"budget.log_every={b.log_every} (a checkpoint closes a logging interval)")
    e = cfg.eval
    for key in ("every", "batch_size", "kid_subsets", "kid_subset_size"):
        _check(p, _is_int(e[key]) and e[key] >= 1, f"eval.{key}", e[key], "must be an integer >= 1")
    _check(p, cfg.regularizer.name in regularizers.REGISTRY, "regularizer.name", cfg.regularizer.name,
           f"valid: {', '.join(sorted(regularizers.REGISTRY))}")
    _check(p, cfg.loss.name in VALID_LOSSES, "loss.name", cfg.loss.name, f"valid: {', '.join(VALID_LOSSES)}")
    _check(p, cfg.model.name in VALID_MODELS, "model.name", cfg.model.name, f"valid: {', '.join(VALID_MODELS)}")
    _check(p, cfg.dataset.name in VALID_DATASETS, "dataset.name", cfg.dataset.name, f"valid: {', '.join(VALID_DATASETS)}")
    if "width" in cfg.model:
        _check(p, isinstance(cfg.model.width, (int, float)) and cfg.model.width > 0, "model.width", cfg.model.width, "must be > 0")
    sp = cfg.speed
    for key in SPEED_SWITCHES:
        if key != "compile":
            _check(p, isinstance(sp[key], bool), f"speed.{key}", sp[key], "must be true or false")
    _check(p, sp.compile is False or sp.compile in COMPILE_MODES, "speed.compile", sp.compile,
           f"valid: false, {', '.join(COMPILE_MODES)}")
    if (why := logger_problem(cfg)) is not None:
        p.append(why)
    try:
        device = resolve_device(cfg.device)
    except ConfigError as err:
        p.append(str(err))
    if p:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(p))
    return device


def run_name(override_dirname: str) -> str:
    """A run directory's name: its command-line overrides, or `default` when there are none."""
    return override_dirname or "default"


# Used by conf/config.yaml's hydra.run.dir / hydra.sweep.subdir.
if not OmegaConf.has_resolver("run_name"):
    OmegaConf.register_new_resolver("run_name", run_name)
