"""LeCam regularization (Tseng, Jiang, Liu, Yang, Yang, CVPR 2021, "Regularizing Generative
Adversarial Networks under Limited Data"; official code github.com/google/lecam-gan):

    weight * (E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2])

added to D's loss, where a_real and a_fake are exponential moving averages of D's mean output
on the real and the generated batch of each D step (decay 0.99). It reads D's outputs of the D
step itself (`score_penalty`), so D is not called again.

The averages follow the authors' StyleGAN2 code (stylegan2/lecam_loss.py): updated with the
step's batch means before the penalty uses them, zero-debiased (a / (1 - decay^t) after t
steps, so the first step's anchor is that step's mean). Their BigGAN code, the source of the
weight (biggan_cifar/scripts/lc-*.sh: --LC 0.3 on CIFAR-10 and -100), instead starts its
averages at the current means and switches the penalty on after 1000 iterations; not done here.
The averages are method state: they travel in the checkpoint, so a resumed run goes on bit
for bit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from regularizers.base import Option, Regularizer


class LeCam(Regularizer):
    name = "lecam"
    kind = "output penalty"
    reads_scores = True

    options = {"weight": Option(float, low=0), "decay": Option(float, low=0, high=1, high_open=True)}

    def __init__(self, weight: float = 0.3, decay: float = 0.99):
        self.weight = weight
        self.decay = decay
        self.steps = 0
        self.averages: torch.Tensor | None = None  # the biased EMAs of (mean D(x), mean D(G(z)))

    def anchors(self) -> torch.Tensor:
        """(a_real, a_fake): the zero-debiased moving averages."""
        return self.averages / (1 - self.decay ** self.steps)

    def score_penalty(self, scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
        means = torch.stack([scores_real.detach().mean(), scores_fake.detach().mean()])
        # on the scores' device, so that the loop does not sync (a resumed run's come from the CPU)
        averages = torch.zeros_like(means) if self.averages is None else self.averages.to(means.device)
        self.averages = averages * self.decay + means * (1 - self.decay)
        self.steps += 1
        a_real, a_fake = self.anchors()
        return self.weight * (F.relu(scores_real - a_fake).pow(2).mean() + F.relu(a_real - scores_fake).pow(2).mean())

    def state_dict(self) -> dict:
        return {"steps": self.steps, "averages": None if self.averages is None else self.averages.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.averages = state["averages"]
