"""Weight clipping (Arjovsky et al. 2017): after every D update, every parameter of D
is clamped to [-c, c] (WGAN's Algorithm 1 clips all of them, biases included)."""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Regularizer


class WeightClipping(Regularizer):
    name = "wc"
    kind = "projection"

    def __init__(self, c: float = 0.01):
        if c <= 0:
            raise ValueError(f"regularizer.c must be > 0, got {c}")
        self.c = c

    @torch.no_grad()
    def after_step(self, D: nn.Module) -> None:
        # the for-each kernels clamp every parameter in two launches, not two per parameter
        params = list(D.parameters())
        torch._foreach_clamp_min_(params, -self.c)
        torch._foreach_clamp_max_(params, self.c)
