"""Weight normalization without gain (Salimans & Kingma 2016, as run in the SN paper):
each row of the (out x in*kh*kw) weight matrix has unit norm, W_i = V_i / ||V_i||."""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer, as_matrix
from regularizers.reparametrize import parametrize_weights


class RowNormalized(nn.Module):
    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        norms = as_matrix(weight).norm(dim=1).clamp_min(self.eps)
        return weight / norms.view(-1, *([1] * (weight.dim() - 1)))


class WeightNorm(Regularizer):
    name = "wn"
    kind = "reparametrization"

    options = {"eps": Option(float, low=0, low_open=True)}  # a floor for norms

    def __init__(self, eps: float = 1e-12):
        self.eps = eps

    def attach(self, D: nn.Module) -> nn.Module:
        return parametrize_weights(D, lambda layer: RowNormalized(self.eps))
