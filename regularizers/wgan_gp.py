"""WGAN-GP (Gulrajani et al. 2017): WGAN loss + lambda * E[(||grad_x D(x_hat)||_2 - 1)^2].

The norm is taken PER SAMPLE over all of C, H, W; x_hat = eps * real + (1 - eps) * fake
with one eps ~ U[0, 1] per sample.
"""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer, input_gradient_norms


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = eps * real.detach() + (1 - eps) * fake.detach()
    return ((input_gradient_norms(D, x_hat) - 1) ** 2).mean()


class WGANGP(Regularizer):
    name = "wgangp"
    kind = "gradient penalty"
    default_loss = "wgan"
    compile_penalty = False  # torch.compile does not support double backward

    options = {"weight": Option(float, low=0)}  # lambda

    def __init__(self, weight: float = 10.0):
        self.weight = weight

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.weight * gradient_penalty(D, real, fake, self.generator)
