"""Normalization layers in D without the learnable gain (SN paper baselines:
"batch norm / layer norm, gamma excluded"), placed where the model leaves a
NormSlot (after every hidden layer but the first, as in chainer-gan-lib's
DCGANDiscriminator). Only the bias (beta) is learned."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn


class NormSlot(nn.Identity):
    """A place in D where a normalization-layer baseline may insert its layer.

    `features` is the channel count, `spatial` whether the input is (N, C, H, W).
    Without such a baseline it is the identity, so D is the same for every method.
    """

    def __init__(self, features: int, spatial: bool):
        super().__init__()
        self.features = features
        self.spatial = spatial


def replace_norm_slots(D: nn.Module, make: Callable[[NormSlot], nn.Module]) -> nn.Module:
    for parent in list(D.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, NormSlot):
                setattr(parent, child_name, make(child))
    return D


def without_gain(norm: nn.Module) -> nn.Module:
    # gamma fixed at 1: a buffer, not a parameter. (weight=None with a bias is what the math says, but
    # CUDA's GroupNorm backward then fails with "tensor does not have a device".) Not persistent, so it
    # is no part of a checkpoint and checkpoints from before this change still load.
    gain = norm.weight.detach().clone()
    del norm.weight
    norm.register_buffer("weight", gain, persistent=False)
    return norm
