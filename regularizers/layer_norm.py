"""Layer normalization in D without gain (SN paper baseline): each sample's
features (all of C, H, W for conv layers) normalized to zero mean, unit variance."""
from __future__ import annotations

from torch import nn

from regularizers.base import Option, Regularizer
from regularizers.normalization_layers import replace_norm_slots, without_gain


class LayerNorm(Regularizer):
    name = "ln"
    kind = "layers"

    options = {"eps": Option(float, low=0, low_open=True)}  # a floor for norms

    def __init__(self, eps: float = 1e-5):
        self.eps = eps

    def attach(self, D: nn.Module) -> nn.Module:
        # GroupNorm with one group normalizes over (C, H, W) per sample, and over
        # the features of a flat (N, C) input alike.
        return replace_norm_slots(D, lambda slot: without_gain(nn.GroupNorm(1, slot.features, eps=self.eps)))
