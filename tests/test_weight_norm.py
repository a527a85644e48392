import torch
from torch import nn

import regularizers
from regularizers import as_matrix, weight_layers


def test_wn_rows_have_unit_norm_and_no_gain():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    D = regularizers.build("wn").attach(D)
    for name, layer in weight_layers(D):
        rows = as_matrix(layer.weight).norm(dim=1)
        assert torch.allclose(rows, torch.ones_like(rows), atol=1e-6), name
        # gain excluded: the only parameters are the direction V and the bias
        assert {n for n, _ in layer.named_parameters()} == {"bias", "parametrizations.weight.original"}
    # a scaled V gives the same effective weight
    layer = D[0]
    before = layer.weight.detach().clone()
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(3.0)
    assert torch.allclose(layer.weight, before, atol=1e-6)
