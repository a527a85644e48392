"""Frobenius normalization (SN paper, appendix): W / ||W||_F."""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer
from regularizers.reparametrize import parametrize_weights


class FrobeniusNormalized(nn.Module):
    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / weight.norm().clamp_min(self.eps)


class FrobeniusNorm(Regularizer):
    name = "fn"
    kind = "reparametrization"

    options = {"eps": Option(float, low=0, low_open=True)}  # a floor for norms

    def __init__(self, eps: float = 1e-12):
        self.eps = eps

    def attach(self, D: nn.Module) -> nn.Module:
        return parametrize_weights(D, lambda layer: FrobeniusNormalized(self.eps))
