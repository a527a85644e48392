"""Discriminator regularizers: one module per method, registered by short name.

`build(name, **options)` is the one way to get a regularizer; the short name
is also the name of its Hydra config, conf/regularizer/<name>.yaml. Methods on
one D together are a combination, named by its parts joined by `+` (fn+wgangp):
`build("combo", parts=[...])` or `build("fn+wgangp")`, configured by
conf/regularizer/combo.yaml.

Every method, built-in or yours, joins REGISTRY by the same call (docs/extending.md):

    from regularizers import REGISTRY, Regularizer

    @REGISTRY.add
    class Lipschitz1(Regularizer):
        name = "lip1"   # conf/regularizer/lip1.yaml selects it
        ...

The built-ins are added below, one `REGISTRY.add` each, as torch-fidelity registers its own.
"""
from __future__ import annotations

from benchmark.registry import Registry
from regularizers.base import Option, Regularizer, as_matrix, trainable_weight, weight_layers
from regularizers.batch_norm import BatchNorm
from regularizers.bidirectional_scaled_spectral_norm import BidirectionalScaledSpectralNorm
from regularizers.combination import Combination, refusal
from regularizers.dragan import DRAGAN
from regularizers.frobenius_norm import FrobeniusNorm
from regularizers.gan_gp import GANGP
from regularizers.gradient_normalization import GradientNormalization
from regularizers.layer_norm import LayerNorm
from regularizers.lecam import LeCam
from regularizers.no_regularization import NoRegularization
from regularizers.orthonormal import Orthonormal
from regularizers.r1 import R1
from regularizers.r2 import R2
from regularizers.singular_value_clipping import SingularValueClipping
from regularizers.spectral_norm import SpectralNorm
from regularizers.weight_clipping import WeightClipping
from regularizers.weight_norm import WeightNorm
from regularizers.wgan_gp import WGANGP

# The single methods; a combination of them is not registered but named by its parts.
# Registry lives in benchmark/registry.py, a module that imports nothing: importing it runs
# benchmark/__init__.py (a docstring) and nothing of the trainer, so regularizers/ stays
# importable on its own while benchmark/ imports regularizers/, and the torch-free contract
# shares the same class.
REGISTRY: Registry[type[Regularizer]] = Registry("regularizer")
REGISTRY.add(NoRegularization)
REGISTRY.add(SpectralNorm)
REGISTRY.add(WeightNorm)
REGISTRY.add(FrobeniusNorm)
REGISTRY.add(WeightClipping)
REGISTRY.add(SingularValueClipping)
REGISTRY.add(WGANGP)
REGISTRY.add(GANGP)
REGISTRY.add(Orthonormal)
REGISTRY.add(BatchNorm)
REGISTRY.add(LayerNorm)
REGISTRY.add(R1)
REGISTRY.add(R2)
REGISTRY.add(DRAGAN)
# Methods since the SN paper (issue 31)
REGISTRY.add(GradientNormalization)
REGISTRY.add(BidirectionalScaledSpectralNorm)
REGISTRY.add(LeCam)
COMBINATION = Combination.name


def is_combination(name: str) -> bool:
    return name == COMBINATION or "+" in name


def known(name: str) -> bool:
    """A registered method, or a combination of registered methods (fn+wgangp)."""
    if is_combination(name):
        return name == COMBINATION or all(part in REGISTRY for part in name.split("+"))
    return name in REGISTRY


def default_loss(name: str) -> str | None:
    """The loss a method, or a combination by its parts, is paired with (None: no pairing)."""
    losses = {REGISTRY[part].default_loss for part in name.split("+") if part in REGISTRY} - {None}
    return losses.pop() if len(losses) == 1 else None


def build(name: str, **options) -> Regularizer:
    if is_combination(name):
        return _build_combination(name, **options)
    if name not in REGISTRY:
        raise ValueError(f"unknown regularizer {name!r}; valid: {', '.join(sorted(REGISTRY))}, "
                         f"or several joined by + (regularizer=combo regularizer.parts=[fn,wgangp])")
    problems = option_problems(name, options)
    if problems:
        raise ValueError("invalid regularizer options:\n  " + "\n  ".join(problems))
    return REGISTRY[name](**options)


def option_problems(name: str, options: dict) -> list[str]:
    """Every bad option of a method (its declared Options), or of a combination: unknown parts,
    each part's options, and why the parts make no sense together. Empty when all are good."""
    if not is_combination(name):
        return REGISTRY[name].option_problems(options)
    options = dict(options)
    parts = list(options.pop("parts", None) or (name.split("+") if "+" in name else []))
    per_part = dict(options.pop("options", None) or {})
    problems = [f"regularizer.{key}={value!r}: regularizer=combo takes parts and options only"
                for key, value in options.items()]
    unknown = [part for part in parts if part not in REGISTRY]
    if unknown:
        return problems + [f"regularizer.parts: unknown method(s) {', '.join(map(str, unknown))}; "
                           f"valid: {', '.join(sorted(REGISTRY))}"]
    stray = sorted(set(per_part) - set(parts))
    if stray:
        problems.append(f"regularizer.options: {', '.join(stray)} not among regularizer.parts={parts}")
    for part in parts:
        problems += REGISTRY[part].option_problems(per_part.get(part) or {}, prefix=f"regularizer.options.{part}.")
    if not problems:
        reason = refusal([REGISTRY[part](**(per_part.get(part) or {})) for part in parts])
        if reason:
            problems.append(f"regularizer.parts=[{','.join(parts)}]: {reason}")
    return problems


def _build_combination(name: str, parts=None, options=None) -> Combination:
    """`options` maps a part to its own options ({"wgangp": {"weight": 1.0}}); a part's other
    options keep their defaults, the values of its conf/regularizer/<part>.yaml."""
    parts = list(parts) if parts is not None else (name.split("+") if "+" in name else [])
    problems = option_problems(name, {"parts": parts, "options": options or {}})
    if problems:
        raise ValueError("invalid combination:\n  " + "\n  ".join(problems))
    return Combination([REGISTRY[part](**(options or {}).get(part, {})) for part in parts])


__all__ = ["COMBINATION", "REGISTRY", "Option", "Registry", "Regularizer", "as_matrix", "build", "default_loss", "is_combination",
           "known", "option_problems", "trainable_weight", "weight_layers"]
