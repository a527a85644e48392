"""The interface every regularizer implements (docs/design.md, "The regularizer interface").

A method acts through at most five hooks, called by the one trainer:
  attach(D)          once, before training: reparametrize weights or change layers
  penalty(D, r, f)   every D step: a term added to D's loss
  score_penalty(sr, sf)  every D step, for a method that `reads_scores`: a term from D's outputs
                     on the step's real and generated batch (LeCam), so D is not called again
  after_step(D)      after every D optimizer step: projections, power iterations
  state_dict()       whatever the method must carry across a checkpoint
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

# Layers whose weight a regularizer acts on: every dense and conv layer of D,
# including the final dense (SN paper, Section 2: "every layer").
WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)

# The kinds of method (the table of docs/design.md, "The regularizer interface"):
KINDS = (
    "none",
    "reparametrization",  # attach puts a parametrization on every weight (SN, WN, FN)
    "projection",         # after_step writes D's parameters in place (weight clipping, SVC)
    "weight penalty",     # penalty() is a function of D's weights (orthonormal)
    "gradient penalty",   # penalty() differentiates D's output per sample w.r.t. its input (WGAN-GP, R1, DRAGAN)
    "output penalty",     # score_penalty() is a function of D's outputs on the step's batches (LeCam)
    "output normalization",  # attach makes D's output f / (||grad_x f|| + |f|) per sample (GN)
    "layers",             # attach fills D's normalization slots (BN, LN)
    "combination",        # several of the above on one D (regularizers/combination.py)
)


def weight_layers(D: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) for every Linear/Conv2d of D, in definition order."""
    for name, module in D.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            yield name, module


def trainable_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the optimizer updates: under a reparametrization `layer.weight` is computed from it."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight (out, in, kh, kw) as the matrix out x (in*kh*kw) (SN paper, Sec. 2.1)."""
    return weight.flatten(1)


def input_gradient_norms(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||_2 of each sample, over all of C, H, W (a common bug takes it over the batch
    or over channels only), differentiable for a penalty. D(x).sum(): each sample's output depends
    on its own input only (no batch norm in D here), so one backward gives every per-sample gradient."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad.flatten(1).norm(dim=1)


@dataclass(frozen=True)
class Option:
    """One config key of a regularizer (conf/regularizer/<name>.yaml): its type and valid range.

    Declared on the class (`options = {"c": Option(float, low=0, low_open=True)}`), so that the
    run's config check refuses a bad value before any data is loaded, with the range named,
    and a new method gets the same check by declaring its keys."""
    kind: type = float        # int: integers only; float: any finite number (ints included); str: a choice;
                              # bool: true or false
    low: float | None = None
    high: float | None = None
    low_open: bool = False    # the bound itself is excluded
    high_open: bool = False
    choices: tuple[str, ...] = ()   # kind str: the valid values

    def describe(self) -> str:
        if self.kind is str:
            return f"one of: {', '.join(self.choices)}"
        if self.kind is bool:
            return "true or false"
        what = "an integer" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<' if self.high_open else '<='} {self.high:g}"
        return what

    def accepts(self, value) -> bool:
        if self.kind is str:
            return value in self.choices
        if self.kind is bool:
            return isinstance(value, bool)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


class Regularizer:
    name: str = ""
    # Every config key the method takes (its __init__ parameters), with its valid range.
    options: ClassVar[dict[str, Option]] = {}
    # What the method does to D, one of KINDS; a combination checks its parts by it.
    kind: str = "none"
    default_loss: str | None = None  # the loss the paper pairs with the method
    # The trainer's noise generator, for methods that draw random numbers (the penalty's
    # interpolation weights), so that a seed fixes them and a resumed run draws the same ones.
    generator: torch.Generator | None = None
    # What the trainer's fast paths (conf `speed:`) must respect:
    couples_batch: bool = False      # D's output for one sample depends on the others (BN)
    counts_d_calls: bool = False     # acts on every D call (SN per_forward): real and fake stay separate calls
    compile_penalty: bool = True     # penalty() can run under torch.compile (not with double backward)
    compile_after_step: bool = True  # after_step() can run under torch.compile
    compile_d_forward: bool = True   # D's forward can run under torch.compile (GN's takes an input gradient)
    reads_scores: bool = False       # score_penalty() adds a term: the trainer hands it D's outputs of each D step

    @classmethod
    def option_problems(cls, values: dict, prefix: str = "regularizer.") -> list[str]:
        """`regularizer.KEY=VALUE: what is valid` for every unknown or bad key of `values`
        (the config group without `name`); empty when all are good."""
        problems = []
        for key, value in values.items():
            if key not in cls.options:
                valid = ", ".join(sorted(cls.options)) or "none"
                problems.append(f"{prefix}{key}={value!r}: regularizer={cls.name} has no such option; valid: {valid}")
            elif not cls.options[key].accepts(value):
                problems.append(f"{prefix}{key}={value!r}: must be {cls.options[key].describe()}")
        return problems

    def attach(self, D: nn.Module) -> nn.Module:
        return D

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return real.new_zeros(())

    def score_penalty(self, scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
        """A term of D's loss from its outputs (logits) on the D step's real and generated batch;
        called only when `reads_scores`."""
        return scores_real.new_zeros(())

    def after_step(self, D: nn.Module) -> None:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None
