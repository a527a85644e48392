import pytest
import torch
from torch import nn

import regularizers
from regularizers.wgan_gp import gradient_penalty


def small_d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, 1, 1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 5 * 5, 1))


def test_gradient_penalty_is_per_sample_over_chw():
    D = small_d()
    real, fake = torch.randn(6, 2, 5, 5), torch.randn(6, 2, 5, 5)
    g = torch.Generator().manual_seed(3)
    value = gradient_penalty(D, real, fake, generator=g)

    # reference by hand: the same eps, one sample at a time, norm over all of C, H, W
    eps = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(3))
    terms = []
    for i in range(6):
        x = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x).sum(), x)
        terms.append((grad.norm() - 1) ** 2)
    reference = torch.stack(terms).mean()
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)

    # the common bugs give other numbers: a norm over the whole batch, or over channels only
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat)
    batch_norm_variant = (grad.norm() - 1) ** 2
    channel_norm_variant = ((grad.norm(dim=1) - 1) ** 2).mean()
    assert value.item() != pytest.approx(batch_norm_variant.item(), rel=1e-3)
    assert value.item() != pytest.approx(channel_norm_variant.item(), rel=1e-3)


def test_gradient_penalty_is_differentiable_in_d_weights():
    D = small_d()
    value = regularizers.build("wgangp").penalty(D, torch.randn(4, 2, 5, 5), torch.randn(4, 2, 5, 5))
    value.backward()
    weights = [p for n, p in D.named_parameters() if n.endswith("weight")]  # biases shift D, not its gradient
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in weights)


def test_wgangp_and_gangp_pair_with_their_losses():
    assert regularizers.build("wgangp").default_loss == "wgan"
    assert regularizers.build("gangp").default_loss == "ns"
    assert regularizers.build("wgangp").weight == 10.0
