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

All layers at once (regularizers/reparametrize.py, docs/cost.md): the forward's
sigma = u^T W v and W / sigma and their gradient are `SpectralDivide`, one node
of the graph for every layer; the iteration is `power_iteration`, stored in
place by `SpectralNorm.iterate`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regularizers.base import Option, Regularizer, as_matrix, weight_layers
from regularizers.reparametrize import (
    Normalized,
    Tensors,
    divide_by_clamped,
    divide_by_clamped_backward,
    parametrize_all_weights,
    shaped,
    split,
)


def register_singular_vectors(module: nn.Module, matrix: torch.Tensor, eps: float) -> None:
    """The persistent u, v of a power iteration on `matrix`, buffers of `module` (saved with the
    model). A random start as in the paper (u ~ N(0, I) normalized), drawn from the global RNG so
    the run's seed fixes it."""
    rows, cols = matrix.shape
    module.register_buffer("u", F.normalize(matrix.new_empty(rows).normal_(), dim=0, eps=eps))
    module.register_buffer("v", F.normalize(matrix.new_empty(cols).normal_(), dim=0, eps=eps))


class SpectralNormalized(Normalized):
    """Parametrization W -> W / (u^T W v); u, v are buffers, so saved with the model."""

    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__(eps)
        register_singular_vectors(self, as_matrix(weight), eps)

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.dot(self.u, as_matrix(weight) @ self.v)

    def normalize_all(self, members: list[Normalized], weights: Tensors) -> list[torch.Tensor]:
        return list(SpectralDivide.apply(self.eps, *weights, *(m.u for m in members), *(m.v for m in members)))


class SpectralDivide(torch.autograd.Function):
    """W / max(u^T W v, eps) for every layer at once; u, v are constants for autograd (the
    gradient flows through W only). The backward is autograd's for the per-layer expression:
    the division's (reparametrize.py), then dot's and mv's, d(Wv) = d_sigma u and dW = d(Wv) v^T."""

    @staticmethod
    def forward(ctx, eps: float, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        weights, us, vs = split(tensors, 3)
        sigmas = [torch.dot(u, as_matrix(W) @ v) for W, u, v in zip(weights, us, vs, strict=True)]
        clamped, quotients = divide_by_clamped(weights, sigmas, eps)
        ctx.eps = eps
        ctx.save_for_backward(*weights, *us, *vs, *sigmas, *clamped)
        return tuple(quotients)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        weights, us, vs, sigmas, clamped = split(ctx.saved_tensors, 5)
        direct, d_sigmas, _ = divide_by_clamped_backward(grads, weights, sigmas, clamped, ctx.eps)
        d_products = torch._foreach_mul(us, d_sigmas)
        d_matrices = torch._foreach_mul([d.unsqueeze(1) for d in d_products], vs)
        d_weights = torch._foreach_add(direct, shaped(d_matrices, [W.shape for W in weights]))
        return None, *d_weights, *(None,) * (2 * len(weights))


@torch.no_grad()
def power_iteration(matrices: Tensors, us: Tensors, vs: Tensors, eps: float) -> tuple[list[torch.Tensor], ...]:
    """One step for every matrix at once: v <- M^T u / ||M^T u||, then u <- M v / ||M v||
    (F.normalize's floor eps). Returns the new u's and v's."""
    vs = _unit([M.t() @ u for M, u in zip(matrices, us, strict=True)], eps)
    us = _unit([M @ v for M, v in zip(matrices, vs, strict=True)], eps)
    return us, vs


def _unit(vectors: list[torch.Tensor], eps: float) -> list[torch.Tensor]:
    norms = torch._foreach_norm(vectors)
    torch._foreach_clamp_min_(norms, eps)
    torch._foreach_div_(vectors, norms)
    return vectors


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
        parametrize_all_weights(D, lambda layer: SpectralNormalized(layer.weight, self.eps))
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
        layers = [layer for _, layer in weight_layers(D)]
        normalized = [layer.parametrizations.weight[0] for layer in layers]
        weights = [layer.parametrizations.weight.original for layer in layers]
        for _ in range(self.n_power_iterations):
            us, vs = power_iteration([as_matrix(W) for W in weights], [sn.u for sn in normalized], [sn.v for sn in normalized], self.eps)
            if self.per_forward:
                # New tensors, not an update in place: the backward of this step's earlier D call
                # still needs the u, v its sigma was computed with.
                for sn, u, v in zip(normalized, us, vs, strict=True):
                    sn.u, sn.v = u, v
            else:
                torch._foreach_copy_([sn.u for sn in normalized], us)
                torch._foreach_copy_([sn.v for sn in normalized], vs)
