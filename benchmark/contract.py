"""What training writes and analysis reads, said once (torch-free: analysis imports it too).

- `identity(config)`: a run's configuration is its resolved config, not how it was typed;
  two records with the same identity and seed are one run, whatever their directory names.
- `METRIC_KINDS`: every metric name the evaluator writes matches exactly one kind, which
  says whether higher is better, what the metric measures (its role) and its worst
  possible value where one exists. Analysis refuses a metric no kind claims rather than
  guess its direction (a guessed direction would report a method's worst setting as best).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

# Config keys that change how, where or how fast a run goes, or when it is measured, but not
# what it trains or what its final numbers mean. `speed.tf32` is not here: it changes results.
SPEED_KEYS_THAT_KEEP_RESULTS = ("speed.cudnn_benchmark", "speed.channels_last", "speed.fused_adam",
                                "speed.joint_d_call", "speed.compile")
PLACEMENT_KEYS = ("device", "progress", "data_root", "dataset.download", "eval.cache_root",
                  "eval.inception_weights", "eval.classifier", *SPEED_KEYS_THAT_KEEP_RESULTS)
# ... and the keys that only say when things are logged, saved or evaluated, and which metrics.
SCHEDULE_KEYS = ("budget.log_every", "budget.checkpoint_every", "budget.sample_every", "eval.every",
                 "eval.batch_size", "eval.metrics", "eval.smoke_metrics", "diagnostics", "logger")
NOT_IDENTITY = ("seed", *PLACEMENT_KEYS, *SCHEDULE_KEYS)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _matches(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def identity(config: dict) -> dict:
    """The flat config keys that make a configuration (the seed and placement left out)."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in flatten(config).items()
            if not _matches(k, NOT_IDENTITY)}


def config_id(config: dict) -> str:
    """A short digest of `identity(config)`: equal for the same configuration however it was typed."""
    text = json.dumps(identity(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class MetricKind:
    name: str
    pattern: re.Pattern
    higher_is_better: bool
    # quality: sample quality and diversity in one number (IS, FID, KID); coverage: how much of
    # the data G covers (mixture modes, KL to uniform over modes); precision: the share of good
    # samples, which a collapsed G maximizes, so it is shown beside a ranking, never as one.
    role: str
    worst: float | None = None   # the worst value possible, where there is one
    description: str = ""


_N = r"\d+k?"
METRIC_KINDS = (
    MetricKind("is", re.compile(rf"^(fmnist_)?is{_N}_\d+splits$"), True, "quality", 1.0,
               "Inception score (classifier-space for fmnist_): mean over splits"),
    MetricKind("fid", re.compile(rf"^(fmnist_)?fid{_N}_({_N}|train)$"), False, "quality", None,
               "Frechet distance of features, generated vs real"),
    MetricKind("kid", re.compile(rf"^(fmnist_)?kid{_N}_({_N}|train)$"), False, "quality", None,
               "kernel distance of features, generated vs real"),
    MetricKind("mixture_kl", re.compile(rf"^mixture{_N}_kl$"), False, "coverage", None,
               "KL(good samples per mode || uniform over modes), nats; none when no sample is good"),
    MetricKind("mixture_modes", re.compile(rf"^mixture{_N}_modes$"), True, "coverage", 0.0,
               "modes covered by good samples"),
    MetricKind("mixture_high_quality", re.compile(rf"^mixture{_N}_high_quality$"), True, "precision", 0.0,
               "share of samples within 3 std of a mode"),
)
# The metric a tier is ranked and judged by, in order of preference: IS where the paper uses
# it (Figures 3, 9 and 11 pick runs by it), then FID, then coverage on the 2-D mixtures.
PRIMARY_ORDER = ("is", "fid", "kid", "mixture_kl", "mixture_modes")


def metric_kind(name: str) -> MetricKind | None:
    """The kind of a metric column, or None (companions such as `is50k_10splits_std` included)."""
    return next((k for k in METRIC_KINDS if k.pattern.match(name)), None)


def higher_is_better(name: str) -> bool:
    kind = metric_kind(name)
    if kind is None:
        raise KeyError(f"{name!r} is not a metric this project knows; kinds: "
                       f"{', '.join(k.name for k in METRIC_KINDS)} (benchmark/contract.py)")
    return kind.higher_is_better


def primary_metric(names) -> str | None:
    """The metric to rank by among `names` (PRIMARY_ORDER; the paper's protocol first within a kind)."""
    names = sorted(names, key=lambda n: (not n.startswith(("is50k", "fid5k")), n))
    for kind in PRIMARY_ORDER:
        for name in names:
            if (k := metric_kind(name)) is not None and k.name == kind:
                return name
    return None
