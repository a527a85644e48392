"""GAN losses (SN paper, Sec. 4): D minimizes d_loss, G minimizes g_loss. One entry per loss in
LOSSES (conf/loss/<name>.yaml selects it by name)."""
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
    g: Callable[[torch.Tensor], torch.Tensor]                # G's loss from D's logits on a fake batch


LOSSES: Registry[Loss] = Registry("loss")
# standard: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))); G non-saturating: -log sigmoid(D(G(z)))
LOSSES.add(Loss("ns", lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
                lambda fake: F.softplus(-fake).mean()))
LOSSES.add(Loss("hinge", lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
                lambda fake: -fake.mean()))
LOSSES.add(Loss("wgan", lambda real, fake: fake.mean() - real.mean(), lambda fake: -fake.mean()))


def d_loss(name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """D's loss from its outputs (logits) on a real and a generated batch."""
    return LOSSES[name].d(real, fake)


def g_loss(name: str, fake: torch.Tensor) -> torch.Tensor:
    return LOSSES[name].g(fake)
