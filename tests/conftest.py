"""Fixtures only; shared helpers are in tests/helpers.py."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmark import data
from benchmark.config import compose_config
from benchmark.evaluation import Evaluator
from tests.datasets_on_disk import write_fashion_mnist
from tests.helpers import TINY_IMAGES


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist(root, n_train=128, n_test=32)
    return root


@pytest.fixture
def tiny_config(image_root):
    def make(*overrides: str):
        # training mechanics only: evaluation has its own tests
        return compose_config([*TINY_IMAGES, f"data_root={image_root}", "budget=smoke", "eval=none", *overrides])
    return make


@pytest.fixture(scope="session")
def real_fashion_mnist(tmp_path_factory) -> SimpleNamespace:
    """The real Fashion-MNIST (Debian's package) with the project's classifier, trained the way a
    user's first fashion_mnist run trains it: automatically, on first use (about two minutes)."""
    if not all((data.DEBIAN_FASHION_MNIST / f"{n}.gz").exists() for n in data.FASHION_MNIST_FILES):
        pytest.skip("dataset-fashion-mnist is not installed (CI installs it)")
    root = tmp_path_factory.mktemp("fashion_mnist")
    cfg = compose_config(["dataset=fashion_mnist", f"data_root={root / 'data'}", f"eval.cache_root={root / 'cache'}",
                          "progress=false"])
    train = data.load_dataset(cfg.dataset, cfg.data_root)
    evaluator = Evaluator(cfg.eval, cfg.dataset, train, torch.device("cpu"), cfg.data_root)
    return SimpleNamespace(cfg=cfg, train=train, evaluator=evaluator, data_root=root / "data",
                           cache_root=root / "cache", classifier=root / "cache" / "fmnist_classifier.pt")
