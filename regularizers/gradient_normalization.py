"""Gradient normalization (Wu et al., ICCV 2021, "Gradient Normalization for Generative
Adversarial Networks"): D's output f is replaced, per sample, by

    f_hat(x) = f(x) / (||grad_x f(x)|| + |f(x)|)

in the D step AND the G step; the input gradient is part of the graph, so each step
backpropagates through it (double backward). Its claims: |f_hat| <= 1, and where f is linear
(a piecewise-linear D: LeakyReLU, no batch norm) grad f_hat = g ||g|| / (||g|| + |f|)^2 with
g = grad f, so ||grad f_hat|| <= 1 on every piece. f_hat may jump where two pieces meet, so
difference quotients across pieces can exceed 1: the claim is about gradients. f_hat does not
change when f is scaled, so f's own scale is free and says nothing.

Why attach changes D's class instead of wrapping D in a module: a wrapper would rename every
layer (`f.conv1`), and layer names are how records, spectra and figures match layers across
methods. Like torch.nn.utils.parametrize, which injects a subclass into a parametrized layer,
attach injects a subclass into D whose forward is f_hat: names, state_dict keys and every
caller (both steps, a penalty, the Lipschitz diagnostics, benchmark/evaluate.py) see f_hat,
the function that is trained. `raw_output(D, x)` is f.

The official code (github.com/basiclab/GNGAN-PyTorch, models/gradnorm.py) adds no epsilon to
the denominator; neither does this. Its CNN configs train with the standard (BCE) loss, the
pairing here.
"""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Regularizer


class GradientNormalizedOutput:
    """The forward of a gradient-normalized D (mixed in before D's own class)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        graph = torch.is_grad_enabled()  # under no_grad: the values, without a graph
        with torch.enable_grad():  # the input gradient is needed even then
            # a batch that already requires grad (G's output in the G step) keeps its graph to G
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            f = super().forward(x)
            # f.sum(): each sample's output depends on its own input only (gn with bn is refused)
            (grad,) = torch.autograd.grad(f.sum(), x, create_graph=graph)
        grad_norm = grad.flatten(1).norm(dim=1).view(-1, *[1] * (f.dim() - 1))
        f_hat = f / (grad_norm + f.abs())
        return f_hat if graph else f_hat.detach()


def raw_output(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """f(x), D's output before the normalization."""
    return super(GradientNormalizedOutput, D).forward(x)


def normalize_output(D: nn.Module) -> nn.Module:
    if isinstance(D, GradientNormalizedOutput):
        raise ValueError("D's output is already gradient-normalized")
    cls = type(D)
    D.__class__ = type(f"GradientNormalized{cls.__name__}", (GradientNormalizedOutput, cls), {})
    return D


class GradientNormalization(Regularizer):
    name = "gn"
    kind = "output normalization"
    compile_d_forward = False  # torch.compile does not support double backward

    def attach(self, D: nn.Module) -> nn.Module:
        return normalize_output(D)
