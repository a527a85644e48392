import pytest
import torch
from torch import nn

import regularizers
from regularizers import weight_layers


def test_fn_weights_have_unit_frobenius_norm():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    D = regularizers.build("fn").attach(D)
    for name, layer in weight_layers(D):
        assert torch.linalg.norm(layer.weight).item() == pytest.approx(1.0, abs=1e-6), name
