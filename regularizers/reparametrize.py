"""Shared wiring for methods that reparametrize every weight of D (SN, WN, FN, BSSN).

torch.nn.utils.parametrize does the wiring: after attach, `layer.weight` is
the effective (normalized) weight and the raw one lives at
`layer.parametrizations.weight.original`.

SN, WN and FN divide each weight by a positive scale, W / max(s(W), eps), and
one layer's division is a handful of tiny operations: on a GPU at small batch
each costs a launch, as much as a convolution (docs/cost.md). So a `Normalized`
parametrization divides the weights of all layers at once, with torch's
`_foreach` list ops and one autograd node: inside a forward pass of D, the
first layer whose weight is read normalizes every layer, and the others take
theirs (`NormalizedLayers`). Under the trainer's parametrize.cached() that is
once per step. Elsewhere (a diagnostic reading one layer's weight) and under
torch.compile, whose fusion makes the batching moot, a layer normalizes its own.

`divide_by_clamped` and its `_backward` are the division for a list of layers
and its gradient, term by term the one autograd derives for the per-layer
expression W / s(W).clamp_min(eps): the gradients are bit for bit the same
(tests/test_reparametrize.py). A method's Function adds its scale's gradient
(`DivideByNorm` for WN and FN; SN's in spectral_norm.py).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from regularizers.base import weight_layers

Tensors = Sequence[torch.Tensor]


def parametrize_weights(D: nn.Module, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """One parametrization per layer, each computed on its own (`make(layer)`)."""
    for _, layer in list(weight_layers(D)):
        parametrize.register_parametrization(layer, "weight", make(layer))
    return D


class Normalized(nn.Module):
    """A layer's parametrization W -> W / max(s(W), eps), computed together with the other layers'."""

    group: NormalizedLayers | None = None  # the layers it is normalized with

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def normalize_all(self, members: list[Normalized], weights: Tensors) -> list[torch.Tensor]:
        """The normalized weights of the layers of `members` (parametrizations of one method, this one
        among them), given their raw weights."""
        raise NotImplementedError

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.group is None or torch.compiler.is_compiling():
            return self.normalize_all([self], [weight])[0]
        return self.group.normalized(self, weight)


class NormalizedLayers:
    """The Normalized parametrizations of one D, normalized together within each forward pass of D."""

    def __init__(self, D: nn.Module):
        self.layers = [layer for _, layer in weight_layers(D)
                       if parametrize.is_parametrized(layer, "weight")
                       and isinstance(layer.parametrizations.weight[0], Normalized)]
        self.in_forward = False
        self.ready: dict[Normalized, torch.Tensor] = {}
        D.register_forward_pre_hook(self._enter)
        D.register_forward_hook(self._leave, always_call=True)

    def _enter(self, D: nn.Module, inputs) -> None:
        self.in_forward = True

    def _leave(self, D: nn.Module, inputs, output) -> None:
        self.in_forward = False
        self.ready = {}

    def normalized(self, member: Normalized, weight: torch.Tensor) -> torch.Tensor:
        if not self.in_forward:
            return member.normalize_all([member], [weight])[0]
        if member not in self.ready:
            members = [layer.parametrizations.weight[0] for layer in self.layers]
            weights = [weight if m is member else layer.parametrizations.weight.original
                       for m, layer in zip(members, self.layers, strict=True)]
            self.ready = dict(zip(members, member.normalize_all(members, weights), strict=True))
        return self.ready.pop(member)


def parametrize_all_weights(D: nn.Module, make: Callable[[nn.Module], Normalized]) -> nn.Module:
    """A Normalized parametrization on every layer (`make(layer)`), the layers normalized together."""
    parametrize_weights(D, make)
    group = NormalizedLayers(D)
    for layer in group.layers:
        layer.parametrizations.weight[0].group = group
    return D


def divide_by_clamped(weights: Tensors, scales: Tensors, eps: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """W / max(s, eps) for every weight W and its scale s (0-d, or shaped to broadcast over W):
    the clamped scales and the quotients."""
    clamped = torch._foreach_clamp_min(scales, eps)
    return clamped, torch._foreach_div(weights, clamped)


def divide_by_clamped_backward(grads: Tensors, weights: Tensors, scales: Tensors, clamped: Tensors, eps: float
                               ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """The gradients of divide_by_clamped for W and for s, each as autograd takes it: dW = G / c;
    dc = sum(-G * (q / c)) over the scale's broadcast, q = W / c the quotient (recomputed, as
    autograd does: a saved output costs two detaches); ds = dc where s >= eps (clamp_min), else 0.
    Returns dW, ds and q."""
    direct = torch._foreach_div(grads, clamped)
    quotients = torch._foreach_div(weights, clamped)
    through = torch._foreach_mul(grads, torch._foreach_div(quotients, clamped))
    d_clamped = torch._foreach_neg([t.sum_to_size(s.shape) for t, s in zip(through, scales, strict=True)])
    d_scales = [d.masked_fill(s < eps, 0.0) for s, d in zip(scales, d_clamped, strict=True)]
    return direct, d_scales, quotients


class DivideByNorm(torch.autograd.Function):
    """W / max(||W||, eps) for every weight at once, the 2-norm taken over all of W (FN) or over
    each row of its matrix (WN, rows=True); one node of the graph for all of them."""

    @staticmethod
    def forward(ctx, eps: float, rows: bool, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        norms = ([torch.linalg.vector_norm(W, dim=tuple(range(1, W.dim())), keepdim=True) for W in weights]
                 if rows else torch._foreach_norm(weights))
        clamped, quotients = divide_by_clamped(weights, norms, eps)
        ctx.eps = eps
        ctx.save_for_backward(*weights, *norms, *clamped)
        return tuple(quotients)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        weights, norms, clamped = split(ctx.saved_tensors, 3)
        direct, d_norms, quotients = divide_by_clamped_backward(grads, weights, norms, clamped, ctx.eps)
        # the norm's gradient, autograd's d * (W / ||W||) with 0 where ||W|| = 0: d is 0 wherever
        # ||W|| < eps, so the quotient W / max(||W||, eps) gives the same numbers
        return None, None, *torch._foreach_add(direct, torch._foreach_mul(d_norms, quotients))


def shaped(matrices: Tensors, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    """Gradients of as_matrix(W) as gradients of W (a dense layer's needs no view)."""
    return [M if M.shape == shape else M.view(shape) for M, shape in zip(matrices, shapes, strict=True)]


def split(tensors: Tensors, parts: int) -> list[Tensors]:
    """(a1, a2, b1, b2) -> [(a1, a2), (b1, b2)]: the lists of a Function's saved tensors."""
    n = len(tensors) // parts
    return [tensors[i * n:(i + 1) * n] for i in range(parts)]
