"""Checks of a composed run config, done before any data is loaded or any
training starts, so that bad input fails fast with the key and value named."""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import regularizers
from benchmark.contract import SPEED_SWITCHES, flatten
from benchmark.data import DATASETS, training_set_size
from benchmark.evaluation import EvaluationSetupError, Protocol, protocol_problems
from benchmark.losses import LOSSES
from benchmark.models import INITS, MODELS
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


def _is_number(x) -> bool:
    """A finite int or float: inf and nan are refused everywhere (lr=inf would only show as a
    'diverged' result, c=inf would switch clipping off)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive_ints(p: list[str], node, prefix: str, keys) -> None:
    for key in keys:
        _check(p, _is_int(node[key]) and node[key] >= 1, f"{prefix}{key}", node[key], "must be an integer >= 1")


@functools.cache
def declared_keys(conf: Path = CONF) -> frozenset[str]:
    """Every key a file of conf/ declares, flattened (`model.init_std`), and every section that
    holds keys (`model`, `speed`): the keys a composed config may have. conf/hydra/ is Hydra's own."""
    keys = set()
    for path in conf.rglob("*.yaml"):
        group = path.parent.relative_to(conf).as_posix()
        if group.split("/")[0] == "hydra":
            continue
        text = path.read_text()
        # the package: `# @package _global_` in the header, else the group's folder
        prefix = "" if group == "." or re.search(r"^#\s*@package\s+_global_\s*$", text, re.M) else group + "."
        for key in flatten({k: v for k, v in (yaml.safe_load(text) or {}).items() if k not in ("defaults", "hydra")}):
            parts = (prefix + key).split(".")
            keys.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    return frozenset(keys)


def _check_declared(p: list[str], cfg) -> None:
    """A key no file of conf/ declares, added with `+` (Hydra refuses one without), is refused
    wherever it is added, with the keys valid there: nothing would read it, so a misspelled knob
    would train silently with its default. The regularizer's keys are its declared Options
    (_check_regularizer); a new option file in conf/<group>/ declares its keys by being there."""
    declared = declared_keys()
    for key, value in flatten(OmegaConf.to_container(cfg, resolve=False)).items():
        if key in declared or key.split(".")[0] in ("regularizer", "hydra"):
            continue
        parent = key
        while "." in parent and parent not in declared:
            parent = parent.rsplit(".", 1)[0]
        parent = parent if parent in declared and parent != key else ""
        start = len(parent) + 1 if parent else 0
        valid = sorted({k[start:].split(".")[0] for k in declared if not parent or k.startswith(parent + ".")})
        p.append(f"{key}={value!r}: no such key; valid {'in ' + parent if parent else 'at the top level'}: "
                 f"{', '.join(valid)}")


def _check_setting(p: list[str], cfg) -> None:
    s = cfg.setting
    _check(p, _is_number(s.lr) and s.lr > 0, "setting.lr", s.lr, "must be a finite number > 0")
    for key in ("beta1", "beta2"):
        _check(p, _is_number(s[key]) and 0 <= s[key] < 1, f"setting.{key}", s[key], "must be in [0, 1)")
    _positive_ints(p, s, "setting.", ("n_dis",))
    _positive_ints(p, cfg, "", ("batch_size", "z_dim"))
    _check(p, s.lr_decay in LR_DECAYS, "setting.lr_decay", s.lr_decay, f"valid: {', '.join(LR_DECAYS)}")
    _positive_ints(p, s, "setting.", ("g_batch_multiplier",))
    _check(p, _is_int(cfg.seed) and cfg.seed >= 0, "seed", cfg.seed, "must be an integer >= 0")
    b = cfg.budget
    _positive_ints(p, b, "budget.", ("iterations", "log_every", "checkpoint_every", "sample_every"))
    if not p and b.checkpoint_every % b.log_every:
        p.append(f"budget.checkpoint_every={b.checkpoint_every!r}: must be a multiple of "
                 f"budget.log_every={b.log_every} (a checkpoint closes a logging interval)")


def _check_regularizer(p: list[str], cfg) -> None:
    """The method's name and every option it declares (regularizers/base.py: Option), or for a
    combination its parts, their options and whether they make sense together."""
    name = cfg.regularizer.name
    if not regularizers.known(name):
        p.append(f"regularizer.name={name!r}: valid: {', '.join(sorted(regularizers.REGISTRY))}, "
                 f"or several through regularizer=combo regularizer.parts=[...]")
        return
    options = {k: v for k, v in OmegaConf.to_container(cfg.regularizer, resolve=True).items() if k != "name"}
    p.extend(regularizers.option_problems(name, options))


def _check_data_and_model(p: list[str], cfg) -> None:
    d, m = cfg.dataset, cfg.model
    for key, value, registry in (("dataset.name", d.name, DATASETS), ("model.name", m.name, MODELS),
                                 ("loss.name", cfg.loss.name, LOSSES)):
        _check(p, value in registry, key, value, f"valid: {registry.valid()}")
    if d.name not in DATASETS or m.name not in MODELS:
        return
    dataset, model = DATASETS[d.name], MODELS[m.name]
    if dataset.data != model.data:
        fitting = " or ".join(x.name for x in MODELS.values() if x.data == dataset.data)
        p.append(f"model={m.name}: dataset={d.name} is {'2-D points' if dataset.data == 'points' else 'images'}: "
                 f"use model={fitting}")
    if "width" in m:
        _check(p, _is_number(m.width) and m.width > 0, "model.width", m.width, "must be a finite number > 0")
    _positive_ints(p, m, "model.", [key for key in ("hidden", "depth") if key in m])  # the MLP's
    _check(p, m.get("init") in INITS, "model.init", m.get("init"), f"valid: {', '.join(INITS)}")
    if m.get("init") == "normal":  # the only init that reads a std (cnn.yaml has it; add +model.init_std=...)
        _check(p, _is_number(m.get("init_std")) and m.get("init_std", 0) > 0, "model.init_std", m.get("init_std"),
               "model.init=normal needs a finite std > 0")
    if "leaky_slope" in m:
        _check(p, _is_number(m.leaky_slope), "model.leaky_slope", m.leaky_slope, "must be a finite number")
    p.extend(dataset.problems(d))
    if dataset.data == "images":
        if _is_int(d.size) and model.data == "images" and (why := model.size_problem(d.size)) is not None:
            p.append(f"dataset.size={d.size!r}: {why}")
        root = Path(str(cfg.data_root)).expanduser()
        if root.exists() and not root.is_dir():
            p.append(f"data_root={str(cfg.data_root)!r}: is a file, not a folder")
    if not p and _is_int(cfg.batch_size) and cfg.batch_size > training_set_size(d):
        p.append(f"batch_size={cfg.batch_size!r}: exceeds the {training_set_size(d)} samples of dataset={d.name}")


def _check_eval(p: list[str], cfg) -> None:
    e, before = cfg.eval, len(p)
    _positive_ints(p, e, "eval.", ("every", "batch_size", "kid_subsets", "kid_subset_size"))
    _check(p, _is_number(e.mixture_covered_fraction) and 0 <= e.mixture_covered_fraction <= 1,
           "eval.mixture_covered_fraction", e.mixture_covered_fraction, "must be in [0, 1]")
    if not OmegaConf.is_list(e.metrics):
        p.append(f"eval.metrics={e.metrics!r}: must be a list of metric names, e.g. eval.metrics=[mixture10k]")
        return
    for key in ("inception_weights", "classifier"):
        if e[key] is not None and not Path(str(e[key])).expanduser().is_file():
            p.append(f"eval.{key}={str(e[key])!r}: no such file")
    if cfg.dataset.name not in DATASETS:
        return
    protocols = []
    for name in e.metrics:
        try:
            protocols.append(Protocol.parse(str(name)))
        except EvaluationSetupError as err:
            p.append(f"eval.metrics: {err}")
    try:
        n_train = training_set_size(cfg.dataset)
    except (KeyError, TypeError, AttributeError):  # a bad dataset key, named by the dataset's own check
        return
    if len(p) == before and _is_int(n_train):  # eval's own keys are valid: the counts can be compared
        p.extend(f"eval.metrics: {problem}" for problem in protocol_problems(
            protocols, e, cfg.dataset.name, DATASETS[cfg.dataset.name].data == "points", n_train))


def _check_diagnostics(p: list[str], cfg) -> None:
    d = cfg.diagnostics
    _check(p, isinstance(d.lipschitz, bool), "diagnostics.lipschitz", d.lipschitz, "must be true or false")
    _positive_ints(p, d, "diagnostics.", ("samples", "power_iterations", "ascent_pairs"))
    _check(p, _is_int(d.ascent_steps) and d.ascent_steps >= 0, "diagnostics.ascent_steps", d.ascent_steps,
           "must be an integer >= 0")
    _check(p, _is_number(d.ascent_radius) and d.ascent_radius > 0, "diagnostics.ascent_radius", d.ascent_radius,
           "must be a finite number > 0")


def validate(cfg) -> torch.device:
    """Raise ConfigError naming every bad key and what is valid; return the device to train on.
    Reads no data and writes nothing: a bad command line costs seconds, whatever it asks for."""
    p: list[str] = []
    _check_declared(p, cfg)
    _check_setting(p, cfg)
    _check_regularizer(p, cfg)
    _check_data_and_model(p, cfg)
    _check_eval(p, cfg)
    _check_diagnostics(p, cfg)
    sp = cfg.speed
    for key in SPEED_SWITCHES:
        if key != "compile":
            _check(p, isinstance(sp[key], bool), f"speed.{key}", sp[key], "must be true or false")
    _check(p, sp.compile is False or sp.compile in COMPILE_MODES, "speed.compile", sp.compile,
           f"valid: false, {', '.join(COMPILE_MODES)}")
    _check(p, isinstance(cfg.progress, bool), "progress", cfg.progress, "must be true or false")
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
    """A run directory's name: its command-line overrides, or `default` when there are none. A
    combination is named by its parts: `regularizer=combo,regularizer.parts=[fn,wgangp]` -> `regularizer=fn+wgangp`."""
    name = re.sub(r"regularizer\.parts=\[([^\]]*)\]",
                  lambda m: "regularizer=" + "+".join(part.strip() for part in m.group(1).split(",")),
                  override_dirname)
    if name != override_dirname:
        name = re.sub(r"(^|,)regularizer=combo(?=,|$)", "", name).lstrip(",")
    return name or "default"


def combination_name(parts) -> str:
    """conf/regularizer/combo.yaml's name: its parts joined by + (fn+wgangp), as runs and tables show it."""
    return "+".join(parts) if len(parts) > 1 else regularizers.COMBINATION


def paired_loss(regularizer_name: str) -> str:
    """conf/loss/paired.yaml's name: the loss the regularizer (a combination: its parts) pairs with, else ns."""
    return regularizers.default_loss(regularizer_name) or "ns"


# Used by conf/config.yaml's hydra.run.dir / hydra.sweep.subdir, conf/regularizer/combo.yaml, conf/loss/paired.yaml.
for _name, _resolver in (("run_name", run_name), ("combination_name", combination_name), ("paired_loss", paired_loss)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
