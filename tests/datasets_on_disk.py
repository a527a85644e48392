"""Small datasets written in the real on-disk formats that torchvision reads
(the real archives cannot be downloaded where the tests run)."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_fashion_mnist(root: Path, n_train: int = 128, n_test: int = 32, seed: int = 0) -> np.ndarray:
    """IDX files (magic 2051 images / 2049 labels, big-endian sizes) in root/FashionMNIST/raw."""
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train_images = None
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())
        if prefix == "train":
            train_images = images
    return train_images


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> np.ndarray:
    """Python pickles (dict with 'data' (N, 3072) uint8 rows in R, G, B planes, 'labels')
    in root/cifar-10-batches-py, as in cifar-10-python.tar.gz."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
        entry = {"batch_label": name, "labels": rng.integers(0, 10, per_batch).tolist(), "data": data,
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        if name != "test_batch":
            train.append(data)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}, f, protocol=2)
    return np.concatenate(train).reshape(-1, 3, 32, 32)


def write_stl10(root: Path, n_train: int = 10, n_unlabeled: int = 14, seed: int = 0) -> np.ndarray:
    """Binaries of stl10_binary: uint8 images stored column-major (N, 3, 96, 96 transposed)."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for split, n in (("train", n_train), ("test", 4), ("unlabeled", n_unlabeled)):
        x = rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
        images[split] = x
        np.transpose(x, (0, 1, 3, 2)).tofile(folder / f"{split}_X.bin")
        if split != "unlabeled":
            rng.integers(1, 11, size=n, dtype=np.uint8).tofile(folder / f"{split}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    (folder / "fold_indices.txt").write_text("\n".join(" ".join(str(j) for j in range(i, n_train, 10)) for i in range(10)) + "\n")
    return np.concatenate([images["train"], images["unlabeled"]])
