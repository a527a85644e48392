import pytest
import torch
from torch import nn

import regularizers
from regularizers.dragan import perturbed_real


def small_d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, 1, 1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 5 * 5, 1))


def per_sample_gradients(D: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    grads = []
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(xi).sum(), xi)
        grads.append(grad)
    return grads


def test_r1_penalty_equals_a_hand_computation_per_sample_over_chw():
    D = small_d()
    real, fake = torch.randn(6, 2, 5, 5), torch.randn(6, 2, 5, 5)
    value = regularizers.build("r1", gamma=3.0).penalty(D, real, fake)
    reference = 3.0 / 2 * torch.stack([(g ** 2).sum() for g in per_sample_gradients(D, real)]).mean()
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)
    # R2: the same on the generated batch
    r2 = regularizers.build("r2", gamma=3.0).penalty(D, real, fake)
    assert r2.item() == pytest.approx((1.5 * torch.stack([(g ** 2).sum() for g in per_sample_gradients(D, fake)])
                                       .mean()).item(), rel=1e-5)
    value.backward()  # differentiable in D's weights (biases shift D, not its input gradient)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in D.named_parameters() if n.endswith("weight"))


def test_lazy_r1_penalizes_every_kth_step_times_k_and_resumes_on_the_same_steps():
    D = small_d()
    real = torch.randn(4, 2, 5, 5)
    every_step = regularizers.build("r1").penalty(D, real, real).item()
    lazy = regularizers.build("r1", every=3)
    values = [lazy.penalty(D, real, real).item() for _ in range(4)]
    assert values[1] == values[2] == 0.0
    assert values[0] == pytest.approx(3 * every_step) and values[3] == pytest.approx(3 * every_step)
    resumed = regularizers.build("r1", every=3)
    resumed.load_state_dict(lazy.state_dict())
    assert [resumed.penalty(D, real, real).item() for _ in range(3)] == [0.0, 0.0, pytest.approx(3 * every_step)]


@pytest.mark.parametrize("option, value", [("gamma", -1.0), ("every", 0), ("every", 1.5)])
def test_r1_rejects_bad_options_naming_the_key(option, value):
    with pytest.raises(ValueError, match=f"regularizer.{option}"):
        regularizers.build("r1", **{option: value})


def test_dragan_perturbation_has_the_stated_statistics():
    """x_hat = x + alpha * 0.5 * std(x) * u with alpha ~ U[0,1) per sample and u ~ U[0,1) per element:
    delta / (0.5 std) lies in [0, 1), with mean E[alpha] E[u] = 1/4 and variance 1/9 - 1/16 = 7/144."""
    real = torch.randn(4000, 3, 4, 4) * 2 + 1
    delta = perturbed_real(real, torch.Generator().manual_seed(0)) - real
    scaled = delta / (0.5 * real.std(correction=0))
    assert scaled.min() >= 0 and scaled.max() < 1
    assert scaled.mean().item() == pytest.approx(1 / 4, abs=0.005)
    assert scaled.var().item() == pytest.approx(7 / 144, abs=0.003)
    # one alpha per sample: within a sample, delta is bounded by that sample's alpha, so the per-sample
    # maxima spread over [0, 1) (uniformly), unlike elementwise alphas where every maximum is near 1
    maxima = scaled.flatten(1).max(dim=1).values
    assert maxima.median().item() == pytest.approx(0.5, abs=0.05)


def test_dragan_penalty_equals_a_hand_computation_at_the_perturbed_points():
    D = small_d()
    real = torch.randn(6, 2, 5, 5)
    reg = regularizers.build("dragan")
    reg.generator = torch.Generator().manual_seed(5)
    value = reg.penalty(D, real, torch.randn_like(real))
    x_hat = perturbed_real(real, torch.Generator().manual_seed(5))
    reference = 10 * torch.stack([(g.norm() - 1) ** 2 for g in per_sample_gradients(D, x_hat)]).mean()
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)
    assert reg.default_loss is None  # the standard loss, as in the authors' code
