"""GAN losses (SN paper, Sec. 4; rpgan: Huang et al. 2024): D minimizes d_loss, G minimizes g_loss.
One entry per loss in LOSSES (conf/loss/<name>.yaml selects it by name)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.registry import Registry


@dataclass(frozen=True)
class Loss:
    name: str
    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # D's loss from its logits on a real and a fake batch
    g: Callable[..., torch.Tensor]  # G's loss from D's logits on a fake batch (a paired loss: and on a real one)
    # Relativistic pairing: each generated sample is scored against a real one, in G's loss too,
    # so the G step draws a real batch of its own (as R3GAN's training loop does).
    paired: bool = False


LOSSES: Registry[Loss] = Registry("loss")
# standard: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))); G non-saturating: -log sigmoid(D(G(z)))
LOSSES.add(Loss("ns", lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
                lambda fake: F.softplus(-fake).mean()))
LOSSES.add(Loss("hinge", lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
                lambda fake: -fake.mean()))
LOSSES.add(Loss("wgan", lambda real, fake: fake.mean() - real.mean(), lambda fake: -fake.mean()))
# Relativistic pairing (Huang, Gokaslan, Kuleshov, Tompkin, NeurIPS 2024, R3GAN, Eq. 2; their
# R3GAN/Trainer.py): D softplus(D(G(z)) - D(x)), G softplus(D(x) - D(G(z))), sample i with sample i.
LOSSES.add(Loss("rpgan", lambda real, fake: F.softplus(fake - real).mean(),
                lambda fake, real: F.softplus(real - fake).mean(), paired=True))


def d_loss(name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """D's loss from its outputs (logits) on a real and a generated batch."""
    return LOSSES[name].d(real, fake)


def g_loss(name: str, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """G's loss from D's outputs on a generated batch; a paired loss also reads them on a real one."""
    loss = LOSSES[name]
    return loss.g(fake, real) if loss.paired else loss.g(fake)
