"""Bidirectional scaled spectral normalization, BSSN (Lin, Sekar, Fanti, NeurIPS 2021, "Why
Spectral Normalization Stabilizes GANs: Analysis and Improvements"; official code
github.com/fjxmlzn/BSN, no_gamma-CNN/gan/op.py):

    W_BSSN = scale * W / ((sigma(W_out) + sigma(W_in)) / 2)

for a conv weight W (out, in, kh, kw), with W_out = the out x (in*kh*kw) matrix SN normalizes
by and W_in = the in x (out*kh*kw) matrix of the transposed kernel (their `transpose=True`).
A dense weight has one spectral norm either way (W_in would be W^T), so it takes SN's, as in
their code, whose `linear` has no bidirectional mode. The scale multiplies every layer, the
final dense included. Each part is an option:

    bidirectional=false, scale=1   plain SN (the paper's Algorithm 1)
    bidirectional=true,  scale=1   BSN
    bidirectional=false, scale=c   SSN
    bidirectional=true,  scale=c   BSSN

sigma is estimated as SN's is in this project (regularizers/spectral_norm.py): one power
iteration per reshaping per D update, run by `after_step` (and one at attach, so iteration k
precedes D update k); the forward only reads the persistent u, v, so the G step's and a
penalty's calls of D do not advance them. Gradients flow through sigma, u and v constant.

All layers at once, as SN (regularizers/reparametrize.py, docs/cost.md): `BidirectionalDivide`
is one node of the graph for every layer, with the per-layer expression's numbers bit for bit
(tests/test_reparametrize.py), and the iteration is SN's `power_iteration` over both lists of
reshapings.
"""
from __future__ import annotations

import torch
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
from regularizers.spectral_norm import power_iteration, register_singular_vectors


def transposed_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight (out, in, kh, kw) as the matrix in x (out*kh*kw)."""
    return weight.transpose(0, 1).flatten(1)


def untransposed(matrix: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The gradient of transposed_matrix(W) as a gradient of W (of `shape`)."""
    return matrix.view(shape[1], shape[0], *shape[2:]).transpose(0, 1)


class PowerIteration(nn.Module):
    """The persistent vectors of one reshaping of a weight."""

    def __init__(self, matrix: torch.Tensor, eps: float):
        super().__init__()
        register_singular_vectors(self, matrix, eps)  # SN's start, from the run's seed


class BidirectionalScaledNormalized(Normalized):
    """Parametrization W -> scale * W / mean(sigma of each reshaping)."""

    def __init__(self, weight: torch.Tensor, scale: float, bidirectional: bool, eps: float):
        super().__init__(eps)
        self.scale = scale
        self.rows = PowerIteration(as_matrix(weight), eps)  # out x in*kh*kw, SN's
        # only a conv has a second reshaping with another spectral norm
        self.columns = PowerIteration(transposed_matrix(weight), eps) if bidirectional and weight.dim() > 2 else None

    def normalize_all(self, members: list[Normalized], weights: Tensors) -> list[torch.Tensor]:
        both = tuple(m.columns is not None for m in members)
        columns = [m.columns for m in members if m.columns is not None]
        return list(BidirectionalDivide.apply(self.eps, self.scale, both, *weights, *(m.rows.u for m in members),
                                              *(m.rows.v for m in members), *(c.u for c in columns),
                                              *(c.v for c in columns)))


class BidirectionalDivide(torch.autograd.Function):
    """scale * W / max(sigma, eps) for every layer at once, sigma = u^T W v or, where `both`, the
    mean of it and the transposed reshaping's; the u's and v's are constants for autograd. The
    backward is autograd's for the per-layer expression, term by term: the scale's, the
    division's (reparametrize.py), the mean's (each sigma takes d / 2), and each reshaping's
    d(Mv) = d_sigma u, dM = d(Mv) v^T, summed into dW in autograd's order (division, transposed,
    SN's)."""

    @staticmethod
    def forward(ctx, eps: float, scale: float, both: tuple[bool, ...], *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(both)
        weights, us, vs = tensors[:n], tensors[n:2 * n], tensors[2 * n:3 * n]
        column_us, column_vs = split(tensors[3 * n:], 2)
        sigmas = [torch.dot(u, as_matrix(W) @ v) for W, u, v in zip(weights, us, vs, strict=True)]
        pairs = [i for i in range(n) if both[i]]
        for i, u, v in zip(pairs, column_us, column_vs, strict=True):
            sigmas[i] = (sigmas[i] + torch.dot(u, transposed_matrix(weights[i]) @ v)) / 2
        clamped, quotients = divide_by_clamped(weights, sigmas, eps)
        ctx.eps, ctx.scale, ctx.both = eps, scale, both
        ctx.save_for_backward(*tensors, *sigmas, *clamped)
        return tuple(torch._foreach_mul(quotients, scale))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        n = len(ctx.both)
        saved = ctx.saved_tensors
        weights, us, vs = saved[:n], saved[n:2 * n], saved[2 * n:3 * n]
        pairs = [i for i in range(n) if ctx.both[i]]
        column_us, column_vs = split(saved[3 * n:3 * n + 2 * len(pairs)], 2)
        sigmas, clamped = split(saved[3 * n + 2 * len(pairs):], 2)
        direct, d_sigmas, _ = divide_by_clamped_backward(torch._foreach_mul(grads, ctx.scale), weights, sigmas,
                                                         clamped, ctx.eps)
        d_weights = list(direct)
        for i, u, v in zip(pairs, column_us, column_vs, strict=True):
            d_sigmas[i] = d_sigmas[i] / 2
            d_weights[i] = d_weights[i] + untransposed((u * d_sigmas[i]).unsqueeze(1) * v, weights[i].shape)
        d_products = torch._foreach_mul(us, d_sigmas)
        d_matrices = torch._foreach_mul([d.unsqueeze(1) for d in d_products], vs)
        d_weights = torch._foreach_add(d_weights, shaped(d_matrices, [W.shape for W in weights]))
        return None, None, None, *d_weights, *(None,) * (2 * n + 2 * len(pairs))  # u's and v's: constants


class BidirectionalScaledSpectralNorm(Regularizer):
    name = "bssn"
    kind = "reparametrization"

    options = {"scale": Option(float, low=0, low_open=True), "bidirectional": Option(bool),
               "n_power_iterations": Option(int, low=1), "eps": Option(float, low=0, low_open=True)}

    def __init__(self, scale: float = 1.0, bidirectional: bool = True, n_power_iterations: int = 1,
                 eps: float = 1e-12):
        self.scale = scale
        self.bidirectional = bidirectional
        self.n_power_iterations = n_power_iterations
        self.eps = eps

    def attach(self, D: nn.Module) -> nn.Module:
        parametrize_all_weights(D, lambda layer: BidirectionalScaledNormalized(layer.weight, self.scale,
                                                                               self.bidirectional, self.eps))
        self.after_step(D)  # the first D update's iteration
        return D

    @torch.no_grad()
    def after_step(self, D: nn.Module) -> None:
        layers = [layer for _, layer in weight_layers(D)]
        weights = [layer.parametrizations.weight.original for layer in layers]
        rows = [layer.parametrizations.weight[0].rows for layer in layers]
        pairs = [(W, layer.parametrizations.weight[0].columns) for W, layer in zip(weights, layers, strict=True)
                 if layer.parametrizations.weight[0].columns is not None]
        for _ in range(self.n_power_iterations):
            for matrices, vectors in (([as_matrix(W) for W in weights], rows),
                                      ([transposed_matrix(W) for W, _ in pairs], [c for _, c in pairs])):
                if not vectors:  # no conv layer, or not bidirectional
                    continue
                us, vs = power_iteration(matrices, [p.u for p in vectors], [p.v for p in vectors], self.eps)
                torch._foreach_copy_([p.u for p in vectors], us)
                torch._foreach_copy_([p.v for p in vectors], vs)
