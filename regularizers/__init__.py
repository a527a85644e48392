"""Discriminator regularizers: one module per method, registered by short name.

`build(name, **options)` is the one way to get a regularizer; the short name
is also the name of its Hydra config, conf/regularizer/<name>.yaml.
"""
from __future__ import annotations

from regularizers.base import Option, Regularizer, as_matrix, weight_layers
from regularizers.batch_norm import BatchNorm
from regularizers.frobenius_norm import FrobeniusNorm
from regularizers.gan_gp import GANGP
from regularizers.layer_norm import LayerNorm
from regularizers.no_regularization import NoRegularization
from regularizers.orthonormal import Orthonormal
from regularizers.singular_value_clipping import SingularValueClipping
from regularizers.spectral_norm import SpectralNorm
from regularizers.weight_clipping import WeightClipping
from regularizers.weight_norm import WeightNorm
from regularizers.wgan_gp import WGANGP

REGISTRY: dict[str, type[Regularizer]] = {
    cls.name: cls
    for cls in (
        NoRegularization, SpectralNorm, WeightNorm, FrobeniusNorm, WeightClipping,
        SingularValueClipping, WGANGP, GANGP, Orthonormal, BatchNorm, LayerNorm,
    )
}


def build(name: str, **options) -> Regularizer:
    if name not in REGISTRY:
        raise ValueError(f"unknown regularizer {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    problems = REGISTRY[name].option_problems(options)
    if problems:
        raise ValueError("invalid regularizer options:\n  " + "\n  ".join(problems))
    return REGISTRY[name](**options)


__all__ = ["REGISTRY", "Option", "Regularizer", "as_matrix", "build", "weight_layers"]
