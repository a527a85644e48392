"""The plug points' registries: one entry per name, a second one under a name refused, and an
unknown name answered with the valid ones."""
import pytest

import regularizers
from benchmark.data import DATASETS
from benchmark.losses import LOSSES
from benchmark.models import MODELS
from regularizers.spectral_norm import SpectralNorm


@pytest.mark.parametrize("registry", [LOSSES, MODELS, DATASETS], ids=lambda r: r.what)
def test_a_second_entry_under_a_name_is_refused_and_unknown_names_list_the_valid_ones(registry):
    name = registry.names()[0]
    with pytest.raises(ValueError, match=f"two {registry.what} entries are named '{name}'"):
        registry.add(registry[name])
    assert registry[name] is not None  # the first one stays
    with pytest.raises(ValueError, match=f"unknown {registry.what} 'bogus'; valid: {registry.valid()}"):
        registry["bogus"]


def test_a_second_regularizer_under_a_name_is_refused():
    class Another(SpectralNorm):
        pass

    with pytest.raises(ValueError, match="SpectralNorm and Another are both named 'sn'"):
        regularizers._registry([SpectralNorm, Another])


def test_every_dataset_says_what_its_samples_are_and_how_many():
    from benchmark.config import compose_config
    for name in DATASETS:
        dataset, cfg = DATASETS[name], compose_config([f"dataset={name}"])
        assert dataset.data in ("images", "points")
        assert dataset.train_size(cfg.dataset) > 0
        assert MODELS[cfg.model.name].data == dataset.data  # its conf picks a model that fits
