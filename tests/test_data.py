import numpy as np
import pytest
import torch

from benchmark import data
from benchmark.config import compose_config
from benchmark.data import BatchStream, DatasetNotFoundError, load_dataset, mixture_modes, sample_mixture
from tests.datasets_on_disk import write_cifar10, write_fashion_mnist, write_stl10


def dataset_cfg(name, *overrides):
    return compose_config([f"dataset={name}", "dataset.download=false", *overrides]).dataset


@pytest.fixture
def skip_md5(monkeypatch):
    """torchvision checks the md5 of the real archives' files; ours are small stand-ins."""
    import torchvision.datasets.cifar
    import torchvision.datasets.stl10
    for module in (torchvision.datasets.cifar, torchvision.datasets.stl10):
        monkeypatch.setattr(module, "check_integrity", lambda *args, **kwargs: True)


def test_cifar10_loads_from_torchvision_pickles(tmp_path, skip_md5):
    expected = write_cifar10(tmp_path, per_batch=20)
    images = load_dataset(dataset_cfg("cifar10"), tmp_path)
    assert images.shape == (100, 3, 32, 32) and images.dtype == torch.uint8
    assert np.array_equal(images.numpy(), expected)  # channel order and layout kept


def test_stl10_loads_train_and_unlabeled_resized_to_48(tmp_path, skip_md5):
    expected = write_stl10(tmp_path, n_train=10, n_unlabeled=14)
    images = load_dataset(dataset_cfg("stl10"), tmp_path)
    assert images.shape == (24, 3, 48, 48) and images.dtype == torch.uint8
    full = load_dataset(dataset_cfg("stl10", "dataset.size=96"), tmp_path)
    assert np.array_equal(full.numpy(), expected)
    # 96 -> 48 averages 2x2 blocks: an image made of constant 2x2 blocks comes back exactly
    blocky = torch.arange(48 * 48, dtype=torch.float32).remainder(251).view(1, 1, 48, 48).expand(1, 3, 48, 48)
    up = blocky.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3).to(torch.uint8)
    assert torch.equal(data.resize_uint8(up, 48), blocky.to(torch.uint8))


def test_fashion_mnist_loads_idx_files_padded_to_32(tmp_path):
    expected = write_fashion_mnist(tmp_path, n_train=40)
    images = load_dataset(dataset_cfg("fashion_mnist"), tmp_path)
    assert images.shape == (40, 1, 32, 32)
    assert np.array_equal(images[:, 0, 2:30, 2:30].numpy(), expected)
    assert images[:, :, :2].sum() == 0 and images[:, :, :, 30:].sum() == 0


def test_fashion_mnist_falls_back_to_debian_files(tmp_path):
    if not all((data.DEBIAN_FASHION_MNIST / f"{n}.gz").exists() for n in data.FASHION_MNIST_FILES):
        pytest.skip("dataset-fashion-mnist is not installed (CI installs it)")
    images = load_dataset(dataset_cfg("fashion_mnist"), tmp_path)
    assert images.shape == (60000, 1, 32, 32)
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_missing_dataset_says_where_it_looked_and_how_to_provide_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(dataset_cfg("cifar10"), tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "cifar-10-python.tar.gz" in message and "data_root" in message


def test_mixtures_put_samples_on_their_modes():
    for name, n_modes, std in (("ring8", 8, 0.02), ("grid25", 25, 0.05)):
        modes = mixture_modes(name)
        assert modes.shape == (n_modes, 2)
        points = sample_mixture(name, 5000, std, seed=0)
        nearest = torch.cdist(points, modes).min(dim=1)
        assert nearest.values.max() < 6 * std
        assert len(nearest.indices.unique()) == n_modes
    assert torch.equal(sample_mixture("ring8", 10, 0.02, 1), sample_mixture("ring8", 10, 0.02, 1))


def test_batch_stream_covers_an_epoch_without_repeats_and_resumes_exactly():
    values = torch.arange(20, dtype=torch.float32).view(20, 1)
    stream = BatchStream(values, batch_size=4, seed=0, device=torch.device("cpu"))
    epoch = torch.cat([stream.next() for _ in range(5)]).flatten()
    assert sorted(epoch.tolist()) == list(range(20))
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in stream.state_dict().items()}
    ahead = [stream.next() for _ in range(7)]
    resumed = BatchStream(values, batch_size=4, seed=123, device=torch.device("cpu"))
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(ahead, [resumed.next() for _ in range(7)], strict=True))


def test_images_are_scaled_to_minus_one_one():
    batch = data.to_model_range(torch.tensor([0, 255], dtype=torch.uint8))
    assert batch.tolist() == [-1.0, 1.0]
