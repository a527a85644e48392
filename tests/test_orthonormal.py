import pytest
import torch
from torch import nn

import regularizers
from regularizers import weight_layers
from regularizers.orthonormal import orthonormal_penalty


def test_orthonormal_penalty_is_zero_for_orthonormal_w():
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    assert orthonormal_penalty(q).item() == pytest.approx(0.0, abs=1e-9)
    wide = torch.linalg.qr(torch.randn(9, 4))[0].t()  # 4 x 9, orthonormal rows
    assert orthonormal_penalty(wide).item() == pytest.approx(0.0, abs=1e-9)


def test_orthonormal_penalty_matches_frobenius_formula():
    torch.manual_seed(0)
    W = torch.randn(7, 5)  # tall: W^T W is the 5 x 5 Gram
    expected = torch.linalg.norm(W.t() @ W - torch.eye(5)) ** 2
    assert orthonormal_penalty(W).item() == pytest.approx(expected.item(), rel=1e-5)


def test_ortho_inits_d_orthonormally_and_adds_beta_times_penalty():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    reg = regularizers.build("ortho", beta=0.5)
    reg.attach(D)
    x = torch.zeros(2, 3, 8, 8)
    assert reg.penalty(D, x, x).item() == pytest.approx(0.0, abs=1e-8)
    with torch.no_grad():
        D[0].weight.mul_(2)
    expected = 0.5 * sum(orthonormal_penalty(layer.weight) for _, layer in weight_layers(D))
    assert reg.penalty(D, x, x).item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() > 1
