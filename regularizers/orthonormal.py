"""Orthonormal regularization (Brock et al. 2016, as run in the SN paper):
orthonormal init of D's weights plus beta * sum_layers ||W^T W - I||_F^2.

W is the (out x in*kh*kw) matrix, oriented so that its Gram matrix is the
smaller one: a wide conv matrix (out < in*kh*kw) has rank <= out, so only
W W^T can equal I; the penalty is then zero exactly at the orthonormal init.

The penalty of all layers is one node of the graph (`OrthonormalPenalty`), with
torch's _foreach list ops where the layers' shapes allow: a GPU at small batch
pays per operation, not per FLOP (docs/cost.md). Its backward is autograd's
for the per-layer expression, term by term, so gradients are bit for bit the same.
"""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer, as_matrix, trainable_weight, weight_layers
from regularizers.reparametrize import shaped, split


def gram(matrix: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix: W W^T of a wide W, W^T W of a tall one."""
    return matrix @ matrix.t() if matrix.shape[0] < matrix.shape[1] else matrix.t() @ matrix


def orthonormal_penalty(weight: torch.Tensor) -> torch.Tensor:
    """||Gram(W) - I||_F^2 of one weight."""
    return OrthonormalPenalty.apply(1.0, weight, identity(weight))


def identity(weight: torch.Tensor) -> torch.Tensor:
    """I of the size of W's Gram matrix."""
    return torch.eye(gram_size(weight), device=weight.device, dtype=weight.dtype)


def gram_size(weight: torch.Tensor) -> int:
    return min(weight.shape[0], weight.shape[1:].numel())


class OrthonormalPenalty(torch.autograd.Function):
    """beta * sum_layers ||Gram(W) - I||_F^2 for a list of weights and their identity matrices."""

    @staticmethod
    def forward(ctx, beta: float, *tensors: torch.Tensor) -> torch.Tensor:
        weights, identities = split(tensors, 2)
        matrices = [as_matrix(W) for W in weights]
        excess = torch._foreach_sub([gram(M) for M in matrices], identities)
        ctx.beta, ctx.shapes = beta, [W.shape for W in weights]
        ctx.save_for_backward(*matrices, *excess)
        total, *rest = (square.sum() for square in torch._foreach_pow(excess, 2))
        for term in rest:  # layer by layer, as Python's sum() adds them
            total = total + term
        return beta * total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        matrices, excess = split(ctx.saved_tensors, 2)
        # pow's backward, grad * (2 * E), with grad = d(penalty) * beta
        d_excess = torch._foreach_mul(torch._foreach_mul(excess, 2.0), grad * ctx.beta)
        # mm's backward for Gram = M M^T: dE M + dE^T M; for M^T M: M dE^T + M dE
        wide = [M.shape[0] < M.shape[1] for M in matrices]
        first = [d @ M if w else M @ d.t() for d, M, w in zip(d_excess, matrices, wide, strict=True)]
        second = [d.t() @ M if w else M @ d for d, M, w in zip(d_excess, matrices, wide, strict=True)]
        d_matrices = torch._foreach_add(first, second)
        return None, *shaped(d_matrices, ctx.shapes), *(None,) * len(matrices)


class Orthonormal(Regularizer):
    name = "ortho"
    kind = "weight penalty"

    options = {"beta": Option(float, low=0)}

    def __init__(self, beta: float = 1e-4):
        self.beta = beta
        self.identities: dict[tuple, torch.Tensor] = {}  # made once, not in every step

    @torch.no_grad()
    def attach(self, D: nn.Module) -> nn.Module:
        for _, layer in weight_layers(D):
            # the trainable weight: after a reparametrization (in a combination) `weight` is computed from it
            nn.init.orthogonal_(trainable_weight(layer))
        return D

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        weights = [layer.weight for _, layer in weight_layers(D)]
        return OrthonormalPenalty.apply(self.beta, *weights, *(self._identity(i, W) for i, W in enumerate(weights)))

    def _identity(self, layer: int, weight: torch.Tensor) -> torch.Tensor:
        # one per layer, even where two have the same size: torch.compile refuses a tensor passed twice
        key = (layer, gram_size(weight), weight.device, weight.dtype)
        if key not in self.identities:
            self.identities[key] = identity(weight)
        return self.identities[key]
