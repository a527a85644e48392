"""Batch normalization in D without gain (SN paper baseline)."""
from __future__ import annotations

from torch import nn

from regularizers.base import Option, Regularizer
from regularizers.normalization_layers import NormSlot, replace_norm_slots, without_gain


def _batch_norm(slot: NormSlot, eps: float, momentum: float) -> nn.Module:
    cls = nn.BatchNorm2d if slot.spatial else nn.BatchNorm1d
    return without_gain(cls(slot.features, eps=eps, momentum=momentum))


class BatchNorm(Regularizer):
    name = "bn"
    kind = "layers"
    couples_batch = True  # batch statistics: real and fake go through D in separate calls, as in the paper's code

    options = {"eps": Option(float, low=0, low_open=True), "momentum": Option(float, low=0, high=1)}

    def __init__(self, eps: float = 2e-5, momentum: float = 0.1):
        self.eps = eps
        self.momentum = momentum

    def attach(self, D: nn.Module) -> nn.Module:
        return replace_norm_slots(D, lambda slot: _batch_norm(slot, self.eps, self.momentum))
