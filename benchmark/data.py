"""Training data: CIFAR-10 and STL-10 through torchvision, Fashion-MNIST from its IDX
files, and 2-D Gaussian mixtures generated from a fixed seed.

Images are kept as one uint8 tensor (N, C, H, W) on the training device and
scaled to [-1, 1] per batch; points are float (N, 2). A BatchStream draws
batches in a seeded order whose state goes into the checkpoint, so a resumed
run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import gzip
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark.registry import Registry
from benchmark.results import write_atomic

STL10_SPLITS = {"train": 5000, "unlabeled": 100000, "train+unlabeled": 105000, "test": 8000}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DatasetError(RuntimeError):
    """A dataset that cannot be used as it is (missing, truncated): bad input, named with its file."""


class DatasetNotFoundError(DatasetError):
    pass


def training_set_size(cfg) -> int:
    """The number of training samples of the dataset config `cfg`, known without reading it
    (the config check compares batch sizes and metric counts with it)."""
    return DATASETS[cfg.name].train_size(cfg)


def check_idx(path: Path) -> None:
    """Refuse an IDX file (MNIST's format) whose length disagrees with its header: a truncated
    download or copy would otherwise be reported by torchvision as a missing dataset."""
    data = path.read_bytes()
    ndim = data[3] if len(data) >= 4 else 0
    header = 4 + 4 * ndim
    if len(data) < header or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes (a damaged copy?): delete it so that "
                           f"it is copied or downloaded again")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise DatasetError(f"{path} is truncated or damaged: {len(data)} bytes, its header promises {expected} "
                           f"({' x '.join(map(str, dims))}); delete it so that it is copied or downloaded again")


def _torchvision_dataset(cls, root: Path, download: bool, where: str, how: str, **kwargs):
    try:
        return cls(str(root), download=download, **kwargs)
    except Exception as err:  # torchvision raises RuntimeError offline/missing, URLError on failed download
        tried = "and the download failed" if download else "(dataset.download=false)"
        raise DatasetNotFoundError(
            f"{cls.__name__} not found at {where} {tried}: {err}\n"
            f"Provide it: {how}, or point data_root=... at a folder that has it."
        ) from err


def load_cifar10(root: Path, download: bool, train: bool = True) -> torch.Tensor:
    from torchvision.datasets import CIFAR10
    ds = _torchvision_dataset(
        CIFAR10, root, download, f"{root}/cifar-10-batches-py",
        "extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into data_root",
        train=train)
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (50000, 3, 32, 32)


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Downscale uint8 NCHW images by area averaging (96 -> 48: the mean of each 2x2 block), in chunks."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="area")
        out[start:start + chunk] = y.round().clamp(0, 255).to(torch.uint8)
    return out


def load_stl10(root: Path, download: bool, split: str, size: int) -> torch.Tensor:
    from torchvision.datasets import STL10
    ds = _torchvision_dataset(
        STL10, root, download, f"{root}/stl10_binary",
        "extract stl10_binary.tar.gz (https://cs.stanford.edu/~acoates/stl10/) into data_root",
        split=split)
    images = torch.from_numpy(ds.data)  # (N, 3, 96, 96)
    return images if size == images.shape[-1] else resize_uint8(images, size)


def _copy_debian_fashion_mnist(raw: Path) -> None:
    """Un-gzip Debian's dataset-fashion-mnist files into torchvision's raw folder (atomically, and
    readable by others like any data file)."""
    for name in FASHION_MNIST_FILES:
        target = raw / name
        if target.exists():
            continue

        def unzip(tmp, name=name):
            with gzip.open(DEBIAN_FASHION_MNIST / f"{name}.gz", "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
        write_atomic(target, unzip)


def load_fashion_mnist(root: Path, download: bool, size: int, train: bool = True) -> torch.Tensor:
    from torchvision.datasets import FashionMNIST
    raw = root / "FashionMNIST" / "raw"
    have_raw = all((raw / name).exists() for name in FASHION_MNIST_FILES)
    if not have_raw and all((DEBIAN_FASHION_MNIST / f"{n}.gz").exists() for n in FASHION_MNIST_FILES):
        _copy_debian_fashion_mnist(raw)
    for name in FASHION_MNIST_FILES:
        if (raw / name).is_file():
            check_idx(raw / name)
    ds = _torchvision_dataset(
        FashionMNIST, root, download, f"{raw} (and {DEBIAN_FASHION_MNIST})",
        "apt-get install dataset-fashion-mnist, or put the IDX files in data_root/FashionMNIST/raw",
        train=train)
    images = ds.data.unsqueeze(1)  # (N, 1, 28, 28)
    pad = size - images.shape[-1]
    if pad < 0 or pad % 2:
        raise ValueError(f"dataset.size must be >= 28 with an even difference (zero padding), got {size}")
    return F.pad(images, (pad // 2,) * 4)  # black border, as in the common 32px setup


def mixture_modes(name: str) -> torch.Tensor:
    """Mode centres of a 2-D mixture (its entry's `modes`)."""
    dataset = DATASETS[name]
    if dataset.modes is None:
        raise ValueError(f"dataset={name} is not a mixture; mixtures: "
                         f"{', '.join(d.name for d in DATASETS.values() if d.modes is not None)}")
    return dataset.modes()


def sample_mixture(name: str, n: int, std: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    modes = mixture_modes(name)
    which = torch.randint(len(modes), (n,), generator=g)
    return modes[which] + std * torch.randn(n, 2, generator=g)


def load_dataset(cfg, data_root: str | os.PathLike, train: bool = True) -> torch.Tensor:
    """The training set of `cfg` (the dataset config group) as one tensor; with train=False the
    held-out set (the test split; fresh points for mixtures), the reference for "real data" scores."""
    return DATASETS[cfg.name].load(cfg, Path(data_root).expanduser().resolve(), train)


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Dataset:
    """One dataset: what its samples are, how it is loaded, what is known of it before reading it.
    conf/dataset/<name>.yaml configures it (a points dataset's conf also picks model=mlp and the
    mixture metrics)."""
    name: str
    data: str   # "images": uint8 (N, C, H, W) | "points": float (N, 2)
    load: Callable[..., torch.Tensor]   # (cfg, root: Path, train: bool) -> the tensor
    train_size: Callable[..., int]      # (cfg) -> training samples, without reading them
    problems: Callable[..., list[str]] = lambda cfg: []  # (cfg) -> its own keys' problems, for the config check
    modes: Callable[[], torch.Tensor] | None = None       # a Gaussian mixture's mode centres
    generated: bool = False             # drawn from a seed: nothing to fetch or store


def _fashion_mnist_problems(cfg) -> list[str]:
    size = cfg.size
    if isinstance(size, int) and not isinstance(size, bool) and size >= 28 and (size - 28) % 2 == 0:
        return []
    return [f"dataset.size={size!r}: must be an integer >= 28 with an even difference to 28 (the 28px images are "
            f"zero-padded)"]


def _stl10_problems(cfg) -> list[str]:
    p = []
    if cfg.split not in STL10_SPLITS:
        p.append(f"dataset.split={cfg.split!r}: valid: {', '.join(STL10_SPLITS)}")
    if not (isinstance(cfg.size, int) and not isinstance(cfg.size, bool) and 1 <= cfg.size <= 96):
        p.append(f"dataset.size={cfg.size!r}: must be an integer in [1, 96]")
    return p


def _mixture_problems(cfg) -> list[str]:
    p = []
    if not (isinstance(cfg.num_samples, int) and not isinstance(cfg.num_samples, bool) and cfg.num_samples >= 1):
        p.append(f"dataset.num_samples={cfg.num_samples!r}: must be an integer >= 1")
    if not (isinstance(cfg.std, (int, float)) and not isinstance(cfg.std, bool) and math.isfinite(cfg.std)
            and cfg.std > 0):
        p.append(f"dataset.std={cfg.std!r}: must be a finite number > 0")
    return p


def mixture(name: str, modes: Callable[[], torch.Tensor]) -> Dataset:
    """A 2-D Gaussian mixture: `num_samples` points drawn once from the data's `seed` (held-out:
    fresh points from seed + 1)."""
    return Dataset(name, "points", lambda cfg, root, train: sample_mixture(name, cfg.num_samples, cfg.std,
                                                                          cfg.seed if train else cfg.seed + 1),
                   lambda cfg: cfg.num_samples, _mixture_problems, modes, generated=True)


def _ring8() -> torch.Tensor:  # the unrolled-GAN ring: 8 modes on a circle of radius 2
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return (2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def _grid25() -> torch.Tensor:  # the VEEGAN grid: 5 x 5 modes over [-4, 4]^2
    axis = torch.arange(-4.0, 4.1, 2.0)
    return torch.cartesian_prod(axis, axis)


DATASETS: Registry[Dataset] = Registry("dataset")
DATASETS.add(Dataset("cifar10", "images", lambda cfg, root, train: load_cifar10(root, cfg.download, train),
                     lambda cfg: 50000))
DATASETS.add(Dataset("stl10", "images",
                     lambda cfg, root, train: load_stl10(root, cfg.download, cfg.split if train else "test", cfg.size),
                     lambda cfg: STL10_SPLITS[cfg.split], _stl10_problems))
DATASETS.add(Dataset("fashion_mnist", "images",
                     lambda cfg, root, train: load_fashion_mnist(root, cfg.download, cfg.size, train),
                     lambda cfg: 60000, _fashion_mnist_problems))
DATASETS.add(mixture("ring8", _ring8))
DATASETS.add(mixture("grid25", _grid25))


class BatchStream:
    """Batches without replacement in a seeded random order, reshuffled each epoch."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int, device: torch.device):
        if batch_size > len(data):
            raise ValueError(f"batch_size={batch_size} exceeds the dataset's {len(data)} samples")
        self.data = data.to(device)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.set_order(torch.randperm(len(data), generator=self.generator))
        self.position = 0

    def set_order(self, order: torch.Tensor) -> None:
        # drawn on the CPU (the same order on every device), copied to the data's device once
        # per epoch rather than one index copy per batch
        self.order = order
        self.order_on_device = order.to(self.data.device)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > len(self.order):  # drop the ragged tail
            self.set_order(torch.randperm(len(self.order), generator=self.generator))
            self.position = 0
        index = self.order_on_device[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return to_model_range(self.data[index])

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.set_order(state["order"])
        self.position = int(state["position"])


def to_model_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1]; points are used as they are."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch.float()
