import pytest
import torch
from torch import nn

import regularizers
from regularizers import as_matrix, spectral_norm, weight_layers


def small_d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.LeakyReLU(0.1), nn.Conv2d(8, 16, 4, 2, 1),
                         nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(16 * 4 * 4, 1))


def exact_sigma(weight: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(as_matrix(weight.detach()))[0])


def test_sn_layers_have_unit_spectral_norm_by_svd():
    D = regularizers.build("sn").attach(small_d())
    reg = regularizers.build("sn")
    for _ in range(100):  # iterations converge for a fixed W (the paper's one per update tracks a slowly moving W)
        reg.after_step(D)
    for name, layer in weight_layers(D):
        assert exact_sigma(layer.weight) == pytest.approx(1.0, abs=0.01), name


def test_sn_gradient_flows_through_sigma():
    """d(W/sigma)/dW includes the -W (u v^T)/sigma^2 term: compare to autograd through an exact reference."""
    torch.manual_seed(1)
    layer = nn.Linear(5, 4)
    regularizers.build("sn").attach(nn.Sequential(layer))
    sn = layer.parametrizations.weight[0]
    original = layer.parametrizations.weight.original
    g = torch.randn(4, 5)
    (layer.weight * g).sum().backward()
    W = original.detach().clone().requires_grad_(True)
    (W / torch.dot(sn.u, W @ sn.v) * g).sum().backward()
    assert torch.allclose(original.grad, W.grad, atol=1e-6)
    with torch.no_grad():
        constant_scale = g / sn.sigma(original)
    assert not torch.allclose(original.grad, constant_scale, atol=1e-4)  # not a constant scale


def test_sn_power_iteration_runs_once_per_d_update_not_per_forward():
    D = regularizers.build("sn").attach(small_d())
    D.train()
    layer = D[0]
    u0 = layer.parametrizations.weight[0].u.clone()
    x = torch.randn(2, 3, 8, 8)
    for _ in range(5):  # G step, penalty and logging calls of D must not advance u
        D(x)
        _ = layer.weight
    assert torch.equal(layer.parametrizations.weight[0].u, u0)
    regularizers.build("sn").after_step(D)
    assert not torch.equal(layer.parametrizations.weight[0].u, u0)


def count_layer_iterations(monkeypatch) -> list[int]:
    """One entry per layer and power iteration step (a step iterates all layers at once)."""
    calls = []
    original = spectral_norm.power_iteration
    monkeypatch.setattr(spectral_norm, "power_iteration",
                        lambda weights, *rest: (calls.extend(map(id, weights)), original(weights, *rest))[1])
    return calls


def test_trainer_runs_one_power_iteration_per_d_update(tiny_config, tmp_path, monkeypatch):
    from benchmark.trainer import Trainer
    calls = count_layer_iterations(monkeypatch)
    trainer = Trainer(tiny_config("regularizer=sn", "setting=A", "budget.iterations=2"), tmp_path)
    layers = len(list(weight_layers(trainer.D)))
    calls.clear()  # attach ran the first update's iteration
    trainer.fit()
    n_dis = 5  # setting A
    assert len(calls) == 2 * n_dis * layers


def test_sn_u_is_saved_in_the_state_dict():
    D = regularizers.build("sn").attach(small_d())
    keys = D.state_dict().keys()
    assert "0.parametrizations.weight.0.u" in keys
    assert "0.parametrizations.weight.original" in keys
    D2 = regularizers.build("sn").attach(small_d())
    D2.load_state_dict(D.state_dict())
    assert torch.equal(D2[0].parametrizations.weight[0].u, D[0].parametrizations.weight[0].u)


def test_trainer_runs_one_power_iteration_per_training_mode_d_call_with_per_forward(tiny_config, tmp_path,
                                                                                   monkeypatch):
    """The authors' Chainer schedule: real and fake calls of each D step, plus the G step's call:
    2 * n_dis + 1 = 11 per generator update at n_dis 5, even with the joint real+fake call switched on."""
    from benchmark.trainer import Trainer
    calls = count_layer_iterations(monkeypatch)
    trainer = Trainer(tiny_config("regularizer=sn", "regularizer.power_iteration=per_forward", "setting=A",
                                  "budget.iterations=2", "speed.joint_d_call=true"), tmp_path)
    layers = len(list(weight_layers(trainer.D)))
    assert not calls  # nothing at attach: the first forward iterates
    trainer.fit()
    assert len(calls) == 2 * (2 * 5 + 1) * layers
    calls.clear()
    trainer.D.eval()
    trainer.D(trainer.batches.next())  # eval mode leaves u alone
    assert not calls


def test_per_forward_advances_u_on_each_training_forward_and_unknown_schedules_are_refused():
    x = torch.randn(2, 3, 8, 8)
    per_forward = regularizers.build("sn", power_iteration="per_forward")
    D = per_forward.attach(small_d())
    sn = D[0].parametrizations.weight[0]
    u0 = sn.u.clone()
    D(x)
    assert not torch.equal(sn.u, u0)
    with pytest.raises(ValueError, match="regularizer.power_iteration"):
        regularizers.build("sn", power_iteration="per_step")
