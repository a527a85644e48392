"""DRAGAN (Kodali et al. 2017, "On convergence and stability of GANs"):
lambda * E[(||grad_x D(x_hat)||_2 - 1)^2] at points x_hat near the REAL data.

The paper writes x_hat = x + delta with delta ~ N(0, cI); the authors' code
(github.com/kodalinaveen3/DRAGAN, DRAGAN.ipynb) draws instead, and this module follows it:
    x_p   = x + 0.5 * std(x) * u,   u ~ U[0, 1) per element, std over the whole batch
            (numpy's x.std(): population std, ddof 0)
    x_hat = x + alpha * (x_p - x),  alpha ~ U[0, 1) per sample
so each element of delta = x_hat - x lies in [0, 0.5 std(x)) with mean 0.125 std(x).
lambda = 10 and the standard loss, as in that code. The norm is per sample over C, H, W.
"""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer, input_gradient_norms


def perturbed_real(real: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    real = real.detach()
    alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(alpha_shape, device=real.device, dtype=real.dtype, generator=generator)
    u = torch.rand(real.shape, device=real.device, dtype=real.dtype, generator=generator)
    return real + alpha * 0.5 * real.std(correction=0) * u


class DRAGAN(Regularizer):
    name = "dragan"
    kind = "gradient penalty"
    compile_penalty = False  # torch.compile does not support double backward

    options = {"weight": Option(float, low=0)}  # lambda

    def __init__(self, weight: float = 10.0):
        self.weight = weight

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        x_hat = perturbed_real(real, self.generator)
        return self.weight * ((input_gradient_norms(D, x_hat) - 1) ** 2).mean()
