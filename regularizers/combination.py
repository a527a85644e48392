"""Several methods on one D: fn+wgangp (the SN paper's Table 7), sn+gangp (Kurach et al. 2019).

Each hook runs every part's hook in the order of the parts: attach one after the
other, the penalties (and the score penalties) summed, after_step one after the
other; each part keeps its own state in the checkpoint. A combination whose parts
would undo or break each other is refused with the reason (`refusal`), before
anything is built on D.
"""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Regularizer


def refusal(parts: list[Regularizer]) -> str | None:
    """Why these parts make no sense together, or None when they do."""
    names = [p.name for p in parts]
    if len(parts) < 2:
        return "a combination needs at least two methods, e.g. regularizer.parts=[fn,wgangp]"
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return f"{', '.join(repeated)} given twice"
    if "none" in names:
        return "none adds nothing to a combination"
    of_kind = {kind: [p.name for p in parts if p.kind == kind] for kind in {p.kind for p in parts}}
    reparametrizations = of_kind.get("reparametrization", [])
    if len(reparametrizations) > 1:
        return (f"{' and '.join(reparametrizations)} both reparametrize every weight of D: a weight takes one "
                f"normalization (stacking them normalizes the already normalized weight)")
    if len(of_kind.get("layers", [])) > 1:
        return f"{' and '.join(of_kind['layers'])} both fill the same normalization slots of D"
    if reparametrizations and of_kind.get("projection"):
        return (f"{' and '.join(of_kind['projection'])} projects D's weights after each step, but under "
                f"{reparametrizations[0]} the weight D uses is recomputed from the raw one: the projection's "
                f"bound is lost (svc's write is discarded, wc's clamp is rescaled away)")
    coupling = [p.name for p in parts if p.couples_batch]
    input_gradients = of_kind.get("gradient penalty", []) + of_kind.get("output normalization", [])
    if coupling and input_gradients:
        return (f"{' and '.join(input_gradients)} takes per-sample input gradients of D, which "
                f"{coupling[0]} couples across the batch: each sample's gradient would depend on the others")
    if of_kind.get("output normalization") and of_kind.get("gradient penalty"):
        return (f"{of_kind['output normalization'][0]} divides D's output by its own input-gradient norm, which "
                f"bounds the gradient norm of the trained f_hat by 1 (Wu et al. 2021 propose it instead of a "
                f"gradient penalty); {' and '.join(of_kind['gradient penalty'])} on f_hat would constrain that "
                f"normalized gradient again, through third derivatives of D")
    losses = {p.name: p.default_loss for p in parts if p.default_loss is not None}
    if len(set(losses.values())) > 1:
        return "the parts pair with different losses: " + ", ".join(f"{n} with {loss}" for n, loss in losses.items())
    return None


class Combination(Regularizer):
    name = "combo"  # the config's name; a run is named by its parts, e.g. fn+wgangp
    kind = "combination"

    def __init__(self, parts: list[Regularizer]):
        reason = refusal(parts)
        if reason:
            raise ValueError(f"regularizer.parts=[{','.join(p.name for p in parts)}]: {reason}")
        self.parts = list(parts)
        self.label = "+".join(p.name for p in parts)
        self.default_loss = next((p.default_loss for p in parts if p.default_loss), None)
        self.couples_batch = any(p.couples_batch for p in parts)
        self.counts_d_calls = any(p.counts_d_calls for p in parts)
        self.compile_penalty = all(p.compile_penalty for p in parts)
        self.compile_after_step = all(p.compile_after_step for p in parts)
        self.compile_d_forward = all(p.compile_d_forward for p in parts)
        self.reads_scores = any(p.reads_scores for p in parts)
        self._generator = None

    @property
    def generator(self) -> torch.Generator | None:
        return self._generator

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        self._generator = generator
        for part in self.parts:
            part.generator = generator

    def attach(self, D: nn.Module) -> nn.Module:
        for part in self.parts:
            D = part.attach(D)
        return D

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        total = self.parts[0].penalty(D, real, fake)
        for part in self.parts[1:]:
            total = total + part.penalty(D, real, fake)
        return total

    def score_penalty(self, scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
        reading = [part for part in self.parts if part.reads_scores]
        if not reading:
            return super().score_penalty(scores_real, scores_fake)
        total = reading[0].score_penalty(scores_real, scores_fake)
        for part in reading[1:]:
            total = total + part.score_penalty(scores_real, scores_fake)
        return total

    def after_step(self, D: nn.Module) -> None:
        for part in self.parts:
            part.after_step(D)

    def state_dict(self) -> dict:
        return {part.name: part.state_dict() for part in self.parts}

    def load_state_dict(self, state: dict) -> None:
        for part in self.parts:
            part.load_state_dict(state[part.name])
