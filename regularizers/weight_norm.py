"""Weight normalization without gain (Salimans & Kingma 2016, as run in the SN paper):
each row of the (out x in*kh*kw) weight matrix has unit norm, W_i = V_i / ||V_i||.
All layers at once (regularizers/reparametrize.py)."""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer
from regularizers.reparametrize import DivideByNorm, Normalized, Tensors, parametrize_all_weights


class RowNormalized(Normalized):
    def normalize_all(self, members: list[Normalized], weights: Tensors) -> list[torch.Tensor]:
        return list(DivideByNorm.apply(self.eps, True, *weights))


class WeightNorm(Regularizer):
    name = "wn"
    kind = "reparametrization"

    options = {"eps": Option(float, low=0, low_open=True)}  # a floor for norms

    def __init__(self, eps: float = 1e-12):
        self.eps = eps

    def attach(self, D: nn.Module) -> nn.Module:
        return parametrize_all_weights(D, lambda layer: RowNormalized(self.eps))
