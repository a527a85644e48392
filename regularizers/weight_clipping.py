"""Weight clipping (Arjovsky et al. 2017): after every D update, D's weights are clamped
to [-c, c]. `params`: which tensors. The SN paper clips "the convolutional weight of each
layer" (Sec. 4.1), so `weights` (every Linear/Conv weight, biases untouched) is the
default; WGAN's Algorithm 1 and its code clamp every parameter, biases included: `all`."""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer, weight_layers


class WeightClipping(Regularizer):
    name = "wc"
    kind = "projection"

    # finite: c=inf would switch clipping off without a word
    options = {"c": Option(float, low=0, low_open=True), "params": Option(str, choices=("weights", "all"))}

    def __init__(self, c: float = 0.01, params: str = "weights"):
        self.c, self.params = c, params
        self.clipped: list[torch.Tensor] = []

    def attach(self, D: nn.Module) -> nn.Module:
        self.clipped = (list(D.parameters()) if self.params == "all"
                        else [layer.weight for _, layer in weight_layers(D)])
        return D

    @torch.no_grad()
    def after_step(self, D: nn.Module) -> None:
        # the for-each kernels clamp every tensor in two launches, not two per tensor
        torch._foreach_clamp_min_(self.clipped, -self.c)
        torch._foreach_clamp_max_(self.clipped, self.c)
