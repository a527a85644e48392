import pytest
import torch
from torch import nn

import regularizers
from benchmark.models import cnn_discriminator, mlp_discriminator


@pytest.mark.parametrize("name,layer_type", [("bn", nn.modules.batchnorm._BatchNorm), ("ln", nn.GroupNorm)])
def test_bn_ln_layers_have_no_learnable_gain(name, layer_type):
    for D, x in ((cnn_discriminator(3, 32, 0.125, 0.1), torch.randn(4, 3, 32, 32)),
                 (mlp_discriminator(2, 16, 3, 0.1), torch.randn(4, 2))):
        D = regularizers.build(name).attach(D)
        norms = [m for m in D.modules() if isinstance(m, layer_type)]
        assert len(norms) >= 2
        for m in norms:
            assert [n for n, _ in m.named_parameters()] == ["bias"]
            assert not m.weight.requires_grad and torch.equal(m.weight, torch.ones_like(m.weight))
            assert "weight" not in m.state_dict()
        assert D(x).shape == (4, 1)


def test_ln_normalizes_each_sample_over_chw():
    D = regularizers.build("ln").attach(cnn_discriminator(3, 32, 0.125, 0.1))
    norm = D.norm2
    x = torch.randn(3, norm.num_channels, 8, 8) * 5 + 2
    y = norm(x)
    assert torch.allclose(y.flatten(1).mean(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.flatten(1).var(dim=1, unbiased=False), torch.ones(3), atol=1e-3)
