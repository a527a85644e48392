"""Orthonormal regularization (Brock et al. 2016, as run in the SN paper):
orthonormal init of D's weights plus beta * sum_layers ||W^T W - I||_F^2.

W is the (out x in*kh*kw) matrix, oriented so that its Gram matrix is the
smaller one: a wide conv matrix (out < in*kh*kw) has rank <= out, so only
W W^T can equal I; the penalty is then zero exactly at the orthonormal init.
"""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer, as_matrix, trainable_weight, weight_layers


def orthonormal_penalty(weight: torch.Tensor) -> torch.Tensor:
    W = as_matrix(weight)
    if W.shape[0] < W.shape[1]:
        W = W.t()
    gram = W.t() @ W
    eye = torch.eye(gram.shape[0], device=W.device, dtype=W.dtype)
    return ((gram - eye) ** 2).sum()


class Orthonormal(Regularizer):
    name = "ortho"
    kind = "weight penalty"

    options = {"beta": Option(float, low=0)}

    def __init__(self, beta: float = 1e-4):
        self.beta = beta

    @torch.no_grad()
    def attach(self, D: nn.Module) -> nn.Module:
        for _, layer in weight_layers(D):
            # the trainable weight: after a reparametrization (in a combination) `weight` is computed from it
            nn.init.orthogonal_(trainable_weight(layer))
        return D

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.beta * sum(orthonormal_penalty(layer.weight) for _, layer in weight_layers(D))
