"""Spectral normalization (Miyato et al. 2018, Algorithm 1): W_SN = W / sigma(W).

Why not torch.nn.utils.parametrizations.spectral_norm: in train mode it runs a
power iteration on EVERY access of `.weight`, so the D calls of the G step and
of a gradient penalty advance u as well. The paper's count is one iteration
per D update, so here the forward only reads u, v, and `after_step` runs the
iteration (one more runs at attach, so iteration k precedes D update k).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regularizers.base import Option, Regularizer, as_matrix, weight_layers
from regularizers.reparametrize import parametrize_weights


class SpectralNormalized(nn.Module):
    """Parametrization W -> W / (u^T W v); u, v are buffers, so saved with the model."""

    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.eps = eps
        rows, cols = as_matrix(weight).shape
        # Random start as in the paper (u ~ N(0, I) normalized), drawn from the
        # global RNG so the run's seed fixes it.
        self.register_buffer("u", F.normalize(weight.new_empty(rows).normal_(), dim=0, eps=eps))
        self.register_buffer("v", F.normalize(weight.new_empty(cols).normal_(), dim=0, eps=eps))

    @torch.no_grad()
    def power_iteration(self, weight: torch.Tensor) -> None:
        W = as_matrix(weight)
        self.v.copy_(F.normalize(W.t() @ self.u, dim=0, eps=self.eps))
        self.u.copy_(F.normalize(W @ self.v, dim=0, eps=self.eps))

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        # u, v are constants for autograd; the gradient flows through W only.
        return torch.dot(self.u, as_matrix(weight) @ self.v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.sigma(weight).clamp_min(self.eps)


class SpectralNorm(Regularizer):
    name = "sn"

    options = {"n_power_iterations": Option(int, low=1), "eps": Option(float, low=0, low_open=True)}

    def __init__(self, n_power_iterations: int = 1, eps: float = 1e-12):
        self.n_power_iterations = n_power_iterations
        self.eps = eps

    def attach(self, D: nn.Module) -> nn.Module:
        parametrize_weights(D, lambda layer: SpectralNormalized(layer.weight, self.eps))
        self.after_step(D)  # the first D update's iteration
        return D

    @torch.no_grad()
    def after_step(self, D: nn.Module) -> None:
        for _, layer in weight_layers(D):
            sn = layer.parametrizations.weight[0]
            for _ in range(self.n_power_iterations):
                sn.power_iteration(layer.parametrizations.weight.original)
