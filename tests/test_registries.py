"""The plug points' registries: one Registry class for all of them, one entry per name, a
second one under a name refused (the first stays), and an unknown name answered with the valid ones."""
import types

import pytest

import regularizers
from benchmark.contract import METRIC_KINDS
from benchmark.data import DATASETS
from benchmark.evaluation import COMPUTE
from benchmark.losses import LOSSES
from benchmark.models import MODELS
from benchmark.registry import Registry
from regularizers.spectral_norm import SpectralNorm

PLUG_POINTS = [LOSSES, MODELS, DATASETS, regularizers.REGISTRY, METRIC_KINDS, COMPUTE]


@pytest.mark.parametrize("registry", PLUG_POINTS, ids=lambda r: r.what)
def test_a_second_entry_under_a_name_is_refused_and_unknown_names_list_the_valid_ones(registry):
    assert isinstance(registry, Registry)
    name = registry.names()[0]
    first = registry[name]
    impostor = types.SimpleNamespace(name=name)  # another entry under the same name
    with pytest.raises(ValueError, match=f"two {registry.what} entries are named '{name}'"):
        registry.add(impostor)
    assert registry[name] is first  # the first one stays
    with pytest.raises(ValueError, match=f"unknown {registry.what} 'bogus'; valid: {registry.valid()}"):
        registry["bogus"]


def test_a_regularizer_subclass_under_a_registered_name_is_refused_and_the_method_stays():
    class Another(SpectralNorm):
        pass

    with pytest.raises(ValueError, match="two regularizer entries are named 'sn'"):
        regularizers.REGISTRY.add(Another)
    assert regularizers.REGISTRY["sn"] is SpectralNorm and isinstance(regularizers.build("sn"), SpectralNorm)


def test_every_metric_kind_has_a_compute_function_under_its_name():
    assert set(METRIC_KINDS) == set(COMPUTE)


def test_every_dataset_says_what_its_samples_are_and_how_many():
    from benchmark.config import compose_config
    for name in DATASETS:
        dataset, cfg = DATASETS[name], compose_config([f"dataset={name}"])
        assert dataset.data in ("images", "points")
        assert dataset.train_size(cfg.dataset) > 0
        assert MODELS[cfg.model.name].data == dataset.data  # its conf picks a model that fits
