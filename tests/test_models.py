import pytest
import torch

import regularizers
from benchmark.config import compose_config
from benchmark.models import build_models


def param_shapes(D) -> dict:
    """Parameter shapes by layer, with reparametrized weights read at their raw tensor."""
    return {n.replace(".parametrizations.weight.original", ".weight"): tuple(p.shape) for n, p in D.named_parameters()}


@pytest.mark.parametrize("model,shape", [("cnn", (3, 32, 32)), ("cnn", (3, 48, 48)), ("cnn", (1, 32, 32)),
                                         ("resnet", (3, 32, 32)), ("resnet", (3, 48, 48)), ("mlp", (2,))])
def test_models_map_latents_to_data_and_data_to_one_logit(model, shape):
    cfg = compose_config([f"model={model}", "model.width=0.125"] if model != "mlp" else ["model=mlp"])
    G, D = build_models(cfg.model, shape, z_dim=128)
    x = G(torch.randn(4, 128))
    assert x.shape == (4, *shape)
    assert D(x).shape == (4, 1)


def test_standard_cnn_d_matches_table_3_at_full_width():
    cfg = compose_config(["model=cnn"])
    _, D = build_models(cfg.model, (3, 32, 32), z_dim=128)
    convs = [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(64, 3, 1), (64, 4, 2), (128, 3, 1), (128, 4, 2), (256, 3, 1), (256, 4, 2), (512, 3, 1)]
    assert D.dense.in_features == 4 * 4 * 512
    assert D.act1.negative_slope == 0.1


def test_d_architecture_is_identical_across_regularizers_except_the_method():
    cfg = compose_config(["model=cnn", "model.width=0.125"])
    torch.manual_seed(0)
    _, plain = build_models(cfg.model, (3, 32, 32), 128)
    reference = param_shapes(plain)
    for name in regularizers.REGISTRY:
        torch.manual_seed(0)
        _, D = build_models(cfg.model, (3, 32, 32), 128)
        shapes = param_shapes(regularizers.build(name).attach(D))
        if name in ("bn", "ln"):  # the method adds a bias-only norm layer per slot, nothing else
            extra = {k: v for k, v in shapes.items() if k not in reference}
            assert all(k.startswith("norm") and k.endswith(".bias") for k in extra), extra
            shapes = {k: v for k, v in shapes.items() if k in reference}
        assert shapes == reference, name
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules()) or name == "bn"


def test_width_multiplier_scales_channels():
    cfg = compose_config(["model=cnn", "model.width=0.5"])
    _, D = build_models(cfg.model, (3, 32, 32), 128)
    assert D.conv7.out_channels == 256


@pytest.mark.parametrize("model,shape,message", [("cnn", (3, 30, 30), "divisible by 8"),
                                                 ("resnet", (3, 64, 64), "32, 48"),
                                                 ("mlp", (3, 32, 32), "2-D point data"),
                                                 ("cnn", (2,), "for images")])
def test_models_reject_data_they_do_not_fit(model, shape, message):
    with pytest.raises(ValueError, match=message):
        build_models(compose_config([f"model={model}"]).model, shape, 128)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("shape,params", [((3, 32, 32), 1_053_825), ((3, 48, 48), 10_141_441)])
def test_resnet_d_has_the_authors_parameter_count(shape, params):
    """sngan_projection's D blocks keep hidden = in_channels (their first, optimized block maps
    in -> out): 1.05M parameters at 32px (Table 4) and 10.1M at 48px (Table 5), not 19.5M."""
    _, D = build_models(compose_config(["model=resnet"]).model, shape, z_dim=128)
    assert _count(D) == params
