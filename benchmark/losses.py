"""GAN losses (SN paper, Sec. 4): D minimizes d_loss, G minimizes g_loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

VALID_LOSSES = ("ns", "hinge", "wgan")


def d_loss(name: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """D's loss from its outputs (logits) on a real and a generated batch."""
    if name == "ns":  # standard: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if name == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if name == "wgan":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(VALID_LOSSES)}")


def g_loss(name: str, fake: torch.Tensor) -> torch.Tensor:
    if name == "ns":  # non-saturating: -log sigmoid(D(G(z)))
        return F.softplus(-fake).mean()
    if name in ("hinge", "wgan"):
        return -fake.mean()
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(VALID_LOSSES)}")
