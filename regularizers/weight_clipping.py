"""Weight clipping (Arjovsky et al. 2017): after every D update, every parameter of D
is clamped to [-c, c] (WGAN's Algorithm 1 clips all of them, biases included)."""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer


class WeightClipping(Regularizer):
    name = "wc"

    # finite: c=inf would switch clipping off without a word
    options = {"c": Option(float, low=0, low_open=True)}

    def __init__(self, c: float = 0.01):
        self.c = c

    @torch.no_grad()
    def after_step(self, D: nn.Module) -> None:
        # the for-each kernels clamp every parameter in two launches, not two per parameter
        params = list(D.parameters())
        torch._foreach_clamp_min_(params, -self.c)
        torch._foreach_clamp_max_(params, self.c)
