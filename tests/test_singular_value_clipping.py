import torch
from torch import nn

import regularizers
from regularizers import as_matrix, weight_layers


def big_d() -> nn.Module:
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    with torch.no_grad():
        for p in D.parameters():
            p.mul_(20)  # singular values well above 1
    return D


def test_svc_singular_values_are_at_most_one_right_after_clipping():
    D = big_d()
    svc = regularizers.build("svc", every=3)
    before = {n: torch.linalg.svdvals(as_matrix(layer.weight.detach())) for n, layer in weight_layers(D)}
    for step in range(1, 4):
        svc.after_step(D)
        for name, layer in weight_layers(D):
            s = torch.linalg.svdvals(as_matrix(layer.weight.detach()))
            if step < 3:
                assert torch.equal(s, before[name])  # not a clipping step
            else:
                assert s.max() <= 1.0 + 1e-5, name
                # the singular values below 1 and the singular vectors are kept
                small = before[name] < 1
                assert torch.allclose(s[small], before[name][small], atol=1e-5)


def test_svc_counter_survives_a_checkpoint():
    svc = regularizers.build("svc", every=5)
    for _ in range(7):
        svc.after_step(nn.Sequential())
    restored = regularizers.build("svc", every=5)
    restored.load_state_dict(svc.state_dict())
    assert restored.d_steps == 7
