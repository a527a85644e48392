"""The interface every regularizer implements (shared/DESIGN.md).

A method acts through at most four hooks, called by the one trainer:
  attach(D)          once, before training: reparametrize weights or change layers
  penalty(D, r, f)   every D step: a term added to D's loss
  after_step(D)      after every D optimizer step: projections, power iterations
  state_dict()       whatever the method must carry across a checkpoint
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

# Layers whose weight a regularizer acts on: every dense and conv layer of D,
# including the final dense (SN paper, Section 2: "every layer").
WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)


def weight_layers(D: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) for every Linear/Conv2d of D, in definition order."""
    for name, module in D.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            yield name, module


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight (out, in, kh, kw) as the matrix out x (in*kh*kw) (SN paper, Sec. 2.1)."""
    return weight.flatten(1)


class Regularizer:
    name: str = ""
    default_loss: str | None = None  # the loss the paper pairs with the method
    # The trainer's noise generator, for methods that draw random numbers (the penalty's
    # interpolation weights), so that a seed fixes them and a resumed run draws the same ones.
    generator: torch.Generator | None = None
    # What the trainer's fast paths (conf `speed:`) must respect:
    couples_batch: bool = False      # D's output for one sample depends on the others (BN)
    compile_penalty: bool = True     # penalty() can run under torch.compile (not with double backward)
    compile_after_step: bool = True  # after_step() can run under torch.compile

    def attach(self, D: nn.Module) -> nn.Module:
        return D

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return real.new_zeros(())

    def after_step(self, D: nn.Module) -> None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None
