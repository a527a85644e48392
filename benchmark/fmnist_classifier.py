"""A small Fashion-MNIST classifier and the torch-fidelity feature extractor built on it.

Inception-v3 features describe 28px grayscale clothing poorly, so FID/KID/PRC on
Fashion-MNIST use this classifier's penultimate layer and the Inception Score
its logits. The classifier sees what the GANs produce: 1x32x32 images in [-1, 1]
(28px images zero-padded by 2 pixels, so the border is -1).

    python -m benchmark.fmnist_classifier --data-root data --out cache/fmnist_classifier.pt
"""
from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_fidelity
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from tqdm.auto import tqdm

from benchmark.data import load_fashion_mnist
from benchmark.results import write_atomic

SCHEMA = 1
IMAGE_SIZE = 32
NUM_CLASSES = 10
# 16/32/64 channels for 4 epochs beat 32/64/128 for 2 (91.7% vs 91.1% test accuracy) in the same CPU time.
CHANNELS = (16, 32, 64)
FEATURE_DIM = 128
DEFAULT_EPOCHS = 4
LEARNING_RATE = 2e-3


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),  # BatchNorm's shift replaces the bias
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FashionMNISTClassifier(nn.Module):
    """Three conv blocks (32 -> 16 -> 8 -> 4 px), a dense feature layer, dropout, 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3 = CHANNELS
        self.convs = nn.Sequential(_conv_block(1, c1), _conv_block(c1, c2), _conv_block(c2, c3))
        final_size = IMAGE_SIZE // 2 ** len(CHANNELS)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(c3 * final_size**2, FEATURE_DIM), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.25)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.convs(x))
        return features, self.head(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the GAN generators' output range."""
    return images.float() / 127.5 - 1.0


@torch.no_grad()
def _accuracy(model: FashionMNISTClassifier, images: torch.Tensor, labels: torch.Tensor,
              device: torch.device, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = _to_unit_range(images[start:start + batch_size].to(device))
        correct += (model(batch).argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    return correct / len(images)


def train_classifier(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
                     test_labels: torch.Tensor, out_path: str | os.PathLike, epochs: int = DEFAULT_EPOCHS,
                     seed: int = 0, batch_size: int = 128, progress: bool = True) -> dict:
    """Train on uint8 (N, 1, 32, 32) images, save {"schema", "state_dict", "test_accuracy", ...} atomically
    to `out_path` and return that record without the state_dict."""
    if train_images.dtype != torch.uint8 or tuple(train_images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected uint8 images (N, 1, {IMAGE_SIZE}, {IMAGE_SIZE}), got {train_images.dtype} "
                         f"{tuple(train_images.shape)}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda_devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    # Fork the RNGs so that seeding for a reproducible run does not reset the caller's random state.
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        model = FashionMNISTClassifier().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        steps_per_epoch = -(-len(train_images) // batch_size)
        # Annealing to zero lets a run of a few epochs end at a good minimum instead of wherever Adam is bouncing.
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
        shuffle = torch.Generator().manual_seed(seed)
        images, labels = train_images.to(device), train_labels.to(device)
        bar = tqdm(total=epochs * steps_per_epoch, desc="Fashion-MNIST classifier", unit="batch",
                   disable=not progress, dynamic_ncols=True)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(images), generator=shuffle).split(batch_size):
                batch = batch.to(device)
                loss = F.cross_entropy(model(_to_unit_range(images[batch])), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1)
                if bar.n % 50 == 0:  # reading the loss syncs with the GPU, so only now and then
                    bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
    record = {"schema": SCHEMA, "test_accuracy": _accuracy(model, test_images, test_labels, device),
              "epochs": epochs, "seed": seed, "train_size": len(train_images)}
    state_dict = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    write_atomic(Path(out_path), lambda tmp: torch.save({**record, "state_dict": state_dict}, tmp))
    return record


def load_classifier(path: str | os.PathLike, device: torch.device | str) -> tuple[FashionMNISTClassifier, dict]:
    """The classifier saved by train_classifier, in eval mode on `device`, and its record without the weights."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"Fashion-MNIST classifier weights not found at {path}: run `make evaluator` (python -m "
            f"benchmark.fmnist_classifier --out {path}), or let the benchmark train it automatically on first use.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("schema") != SCHEMA:
            found = saved.get("schema") if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(f"schema {found!r}, this code reads schema {SCHEMA}")
        model = FashionMNISTClassifier()
        model.load_state_dict(saved["state_dict"])
    except Exception as err:
        raise RuntimeError(f"Fashion-MNIST classifier {path} cannot be read ({type(err).__name__}: {err}); "
                           f"delete it to have it trained again") from err
    record = {key: value for key, value in saved.items() if key != "state_dict"}
    return model.to(device).eval(), record


class FashionMNISTFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity features of the classifier: "features" (penultimate layer) and "logits"."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs) -> None:
        # torch-fidelity passes every calculate_metrics option here; the others are not ours to use.
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"feature extractor {name!r} needs feature_extractor_weights_path: the classifier "
                             f"file written by benchmark.fmnist_classifier")
        self.classifier, _ = load_classifier(feature_extractor_weights_path, "cpu")
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, str]:
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W) as torch-fidelity passes them, got {x.dtype} "
                             f"{tuple(x.shape)}")
        # torch-fidelity repeats gray images to 3 channels; the classifier was trained on one.
        images = _to_unit_range(x[:, :1])
        if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True,
                                   align_corners=False)
        features, logits = self.classifier.features_and_logits(images)
        computed = {"features": features, "logits": logits}
        return tuple(computed[name].float() for name in self.features_list)


def extractor_name(weights_path: str | os.PathLike) -> str:
    """A name unique to the weights: torch-fidelity caches statistics by extractor name, and statistics
    of one classifier must never be compared with those of another."""
    digest = hashlib.sha256(Path(weights_path).read_bytes()).hexdigest()
    return f"fmnist-classifier-{digest[:8]}"


def register_extractor(weights_path: str | os.PathLike) -> str:
    """Register FashionMNISTFeatureExtractor for these weights (once per process) and return its name."""
    name = extractor_name(weights_path)
    if name not in torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY:  # registering a name twice raises
        torch_fidelity.register_feature_extractor(name, FashionMNISTFeatureExtractor)
    return name


def load_labeled_fashion_mnist(root: Path, train: bool, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, 32, 32) and int64 labels (N,) of one Fashion-MNIST split."""
    from torchvision.datasets import FashionMNIST
    # load_fashion_mnist puts the raw files in place (from Debian's package if need be) before the labels are read.
    images = load_fashion_mnist(root, download, IMAGE_SIZE, train=train)
    labels = FashionMNIST(str(root), train=train, download=False).targets
    return images, labels


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Train the Fashion-MNIST classifier behind FID/KID/PRC/IS.")
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("cache/fmnist_classifier.pt"))
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--download", action="store_true", help="download Fashion-MNIST if it is not in --data-root")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    root = args.data_root.expanduser().resolve()
    train_images, train_labels = load_labeled_fashion_mnist(root, train=True, download=args.download)
    test_images, test_labels = load_labeled_fashion_mnist(root, train=False, download=args.download)
    start = time.perf_counter()
    record = train_classifier(train_images, train_labels, test_images, test_labels, args.out, epochs=args.epochs,
                              seed=args.seed, progress=args.progress)
    print(f"test accuracy {record['test_accuracy']:.4f} after {record['epochs']} epochs "
          f"({time.perf_counter() - start:.0f} s); saved {args.out}")
    return record


if __name__ == "__main__":
    main()
