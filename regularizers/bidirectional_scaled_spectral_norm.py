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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regularizers.base import Option, Regularizer, as_matrix, weight_layers
from regularizers.reparametrize import parametrize_weights


def transposed_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight (out, in, kh, kw) as the matrix in x (out*kh*kw)."""
    return weight.transpose(0, 1).flatten(1)


class PowerIteration(nn.Module):
    """The persistent vectors of one reshaping of a weight, and sigma = u^T M v from them."""

    def __init__(self, matrix: torch.Tensor, eps: float):
        super().__init__()
        self.eps = eps
        rows, cols = matrix.shape
        # a random start, from the global RNG so that the run's seed fixes it (as SN's)
        self.register_buffer("u", F.normalize(matrix.new_empty(rows).normal_(), dim=0, eps=eps))
        self.register_buffer("v", F.normalize(matrix.new_empty(cols).normal_(), dim=0, eps=eps))

    @torch.no_grad()
    def iterate(self, matrix: torch.Tensor) -> None:
        self.v.copy_(F.normalize(matrix.t() @ self.u, dim=0, eps=self.eps))
        self.u.copy_(F.normalize(matrix @ self.v, dim=0, eps=self.eps))

    def sigma(self, matrix: torch.Tensor) -> torch.Tensor:
        return torch.dot(self.u, matrix @ self.v)


class BidirectionalScaledNormalized(nn.Module):
    """Parametrization W -> scale * W / mean(sigma of each reshaping)."""

    def __init__(self, weight: torch.Tensor, scale: float, bidirectional: bool, eps: float):
        super().__init__()
        self.scale = scale
        self.eps = eps
        self.rows = PowerIteration(as_matrix(weight), eps)  # out x in*kh*kw, SN's
        # only a conv has a second reshaping with another spectral norm
        self.columns = PowerIteration(transposed_matrix(weight), eps) if bidirectional and weight.dim() > 2 else None

    @torch.no_grad()
    def power_iteration(self, weight: torch.Tensor) -> None:
        self.rows.iterate(as_matrix(weight))
        if self.columns is not None:
            self.columns.iterate(transposed_matrix(weight))

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        sigma = self.rows.sigma(as_matrix(weight))
        if self.columns is not None:
            sigma = (sigma + self.columns.sigma(transposed_matrix(weight))) / 2
        return sigma

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.sigma(weight).clamp_min(self.eps) * self.scale  # scale 1: exactly SN's W / sigma


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
        parametrize_weights(D, lambda layer: BidirectionalScaledNormalized(layer.weight, self.scale,
                                                                           self.bidirectional, self.eps))
        self.after_step(D)  # the first D update's iteration
        return D

    @torch.no_grad()
    def after_step(self, D: nn.Module) -> None:
        for _, layer in weight_layers(D):
            normalized = layer.parametrizations.weight[0]
            for _ in range(self.n_power_iterations):
                normalized.power_iteration(layer.parametrizations.weight.original)
