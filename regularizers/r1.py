"""R1 (Mescheder et al. 2018, "Which training methods for GANs do actually converge?"):
gamma / 2 * E_real[||grad_x D(x)||^2], the squared norm PER SAMPLE over all of C, H, W.

R2 (regularizers/r2.py) is the same penalty on the generated batch. The lazy variant
(StyleGAN2, Karras et al. 2020) computes the penalty on every k-th D step only and
multiplies it by k, so its average weight stays gamma / 2. StyleGAN2 takes the penalty
as an optimizer step of its own and so rescales Adam's lr and betas by k / (k + 1);
here it is added to that D step's loss, so the setting's Adam is left as it is.
"""
from __future__ import annotations

import torch
from torch import nn

from regularizers.base import Option, Regularizer


def squared_gradient_norm(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] over the batch, each sample's norm over all of C, H, W."""
    x = x.detach().requires_grad_(True)
    # D(x).sum(): each sample's output depends on its own input only (no batch norm in
    # D: a combination refuses bn with a gradient penalty), so one backward gives them all.
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


class R1(Regularizer):
    name = "r1"
    kind = "gradient penalty"
    compile_penalty = False  # torch.compile does not support double backward
    on_real = True  # R2: False, the generated batch

    options = {"gamma": Option(float, low=0), "every": Option(int, low=1)}

    def __init__(self, gamma: float = 10.0, every: int = 1):
        self.gamma = gamma
        self.every = every
        self.d_steps = 0  # D steps seen; checkpointed so that a resumed run penalizes on the same steps

    def penalty(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        due = self.d_steps % self.every == 0  # the first D step is a penalized one, as in StyleGAN2
        self.d_steps += 1
        if not due:
            return real.new_zeros(())
        return self.every * self.gamma / 2 * squared_gradient_norm(D, real if self.on_real else fake)

    def state_dict(self) -> dict:
        return {"d_steps": self.d_steps}

    def load_state_dict(self, state: dict) -> None:
        self.d_steps = int(state["d_steps"])
