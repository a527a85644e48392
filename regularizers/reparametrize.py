"""Shared wiring for methods that reparametrize every weight of D (SN, WN, FN).

torch.nn.utils.parametrize does the wiring: after attach, `layer.weight` is
the effective (normalized) weight and the raw one lives at
`layer.parametrizations.weight.original`.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torch.nn.utils import parametrize

from regularizers.base import weight_layers


def parametrize_weights(D: nn.Module, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    for _, layer in list(weight_layers(D)):
        parametrize.register_parametrization(layer, "weight", make(layer))
    return D
