"""Spectral normalization (Miyato et al. 2018, Algorithm 1): W_SN = W / sigma(W).

Why not torch.nn.utils.parametrizations.spectral_norm: in train mode it runs a
power iteration on EVERY access of `.weight`, so the D calls of the G step and
of a gradient penalty advance u as well. The paper's count is one iteration
per D update, so here the forward only reads u, v, and `after_step` runs the
iteration (one more runs at attach, so iteration k precedes D update k).

`power_iteration: per_forward` is the schedule of the authors' Chainer code
instead: one iteration before every forward pass of D in training mode (the
real and the fake batch, a penalty's call, the G step's call: 2 * n_dis + 1
per generator update without a penalty). The trainer computes each weight
once per step (parametrize.cached), so a step's later D calls use the sigma of
its first call; u still advances once per call.
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
        # u, v are constants for autograd; the gradient flows through W only. Copies, because
        # per_forward iterates in place before the backward of an earlier call of the step.
        return torch.dot(self.u.clone(), as_matrix(weight) @ self.v.clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.sigma(weight).clamp_min(self.eps)


POWER_ITERATION_SCHEDULES = ("per_update", "per_forward")


class SpectralNorm(Regularizer):
    name = "sn"
    kind = "reparametrization"

    options = {"n_power_iterations": Option(int, low=1), "eps": Option(float, low=0, low_open=True),
               "power_iteration": Option(str, choices=POWER_ITERATION_SCHEDULES)}

    def __init__(self, n_power_iterations: int = 1, eps: float = 1e-12, power_iteration: str = "per_update"):
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.per_forward = power_iteration == "per_forward"
        # per_forward counts D's calls: real and fake in one call would make one iteration of two
        self.counts_d_calls = self.per_forward

    def attach(self, D: nn.Module) -> nn.Module:
        parametrize_weights(D, lambda layer: SpectralNormalized(layer.weight, self.eps))
        if self.per_forward:
            D.register_forward_pre_hook(self._before_forward)
        else:
            self.iterate(D)  # the first D update's iteration
        return D

    def _before_forward(self, D: nn.Module, inputs) -> None:
        if D.training:
            self.iterate(D)

    def after_step(self, D: nn.Module) -> None:
        if not self.per_forward:
            self.iterate(D)

    @torch.no_grad()
    def iterate(self, D: nn.Module) -> None:
        for _, layer in weight_layers(D):
            sn = layer.parametrizations.weight[0]
            for _ in range(self.n_power_iterations):
                sn.power_iteration(layer.parametrizations.weight.original)
