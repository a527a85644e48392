from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN
from torch_fidelity.utils import create_feature_extractor

from benchmark.fmnist_classifier import (
    DEFAULT_EPOCHS,
    FEATURE_DIM,
    FashionMNISTFeatureExtractor,
    extractor_name,
    load_classifier,
    load_labeled_fashion_mnist,
    main,
    register_extractor,
    train_classifier,
)
from tests.datasets_on_disk import write_fashion_mnist


def random_split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (n,), generator=g)


def train_tiny(out: Path, seed: int = 0) -> dict:
    """One epoch of two batches: enough weights to wire through torch-fidelity, in well under a second."""
    return train_classifier(*random_split(64, seed=1), *random_split(16, seed=2), out, epochs=1, seed=seed,
                            batch_size=32, progress=False)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("classifier") / "fmnist_classifier.pt"
    train_tiny(path)
    return path


def gray_as_fidelity_passes_it(images: torch.Tensor) -> torch.Tensor:
    return images.repeat(1, 3, 1, 1)


def test_saved_record_loads_with_weights_only(tiny_weights):
    saved = torch.load(tiny_weights, weights_only=True)
    assert saved["schema"] == 1 and saved["epochs"] == 1 and saved["seed"] == 0 and saved["train_size"] == 64
    assert 0.0 <= saved["test_accuracy"] <= 1.0
    model, record = load_classifier(tiny_weights, "cpu")
    assert not model.training and "state_dict" not in record
    assert record["test_accuracy"] == saved["test_accuracy"]
    assert not list(tiny_weights.parent.glob(".*")), "the temp file of the atomic save was left behind"


def test_training_is_deterministic_given_the_seed(tmp_path, tiny_weights):
    train_tiny(tmp_path / "again.pt")
    again = load_classifier(tmp_path / "again.pt", "cpu")[0].state_dict()
    first = load_classifier(tiny_weights, "cpu")[0].state_dict()
    assert all(torch.equal(again[key], first[key]) for key in first)


def test_missing_or_unreadable_weights_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "absent.pt"
    with pytest.raises(FileNotFoundError, match="make evaluator") as err:
        load_classifier(missing, "cpu")
    assert str(missing) in str(err.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError) as err:
        load_classifier(garbage, "cpu")
    assert str(garbage) in str(err.value)


def test_extractor_needs_weights():
    with pytest.raises(ValueError, match="feature_extractor_weights_path"):
        FashionMNISTFeatureExtractor("fmnist-classifier-x", ["features"])


def test_extractor_through_torch_fidelity(tiny_weights):
    name = register_extractor(tiny_weights)
    assert register_extractor(tiny_weights) == name  # a second registration is a no-op, not an error
    extractor = create_feature_extractor(name, ["features", "logits"], cuda=False,
                                         feature_extractor_weights_path=str(tiny_weights), verbose=False)
    assert extractor.get_default_feature_layer_for_metric("fid") == "features"
    assert extractor.get_default_feature_layer_for_metric("isc") == "logits"

    images, _ = random_split(40, seed=3)
    with torch.no_grad():
        features, logits = extractor(gray_as_fidelity_passes_it(images))
        classifier_features, classifier_logits = load_classifier(tiny_weights, "cpu")[0].features_and_logits(
            images.float() / 127.5 - 1)
    assert features.shape == (40, FEATURE_DIM) and logits.shape == (40, 10)
    assert features.dtype == logits.dtype == torch.float32
    torch.testing.assert_close(features, classifier_features)
    torch.testing.assert_close(logits, classifier_logits)

    stats_1 = fid_features_to_statistics(features[:20])
    stats_2 = fid_features_to_statistics(features[20:])
    assert fid_statistics_to_metric(stats_1, stats_2, verbose=False)[KEY_METRIC_FID] >= -1e-6
    assert isc_features_to_metric(logits, splits=2)[KEY_METRIC_ISC_MEAN] >= 1.0 - 1e-6


class GrayImages(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return gray_as_fidelity_passes_it(self.images[index:index + 1])[0]


def test_calculate_metrics_accepts_the_extractor(tiny_weights):
    """calculate_metrics hands all its options to the extractor's constructor, which must accept them."""
    # save_cpu_ram: load in-process, as DataLoader workers would only oversubscribe small CI machines.
    metrics = torch_fidelity.calculate_metrics(
        input1=GrayImages(random_split(60, seed=5)[0]), input2=GrayImages(random_split(60, seed=6)[0]),
        cuda=False, isc=True, fid=True, kid=True, kid_subset_size=20,
        feature_extractor=register_extractor(tiny_weights), feature_extractor_weights_path=str(tiny_weights),
        cache=False, save_cpu_ram=True, verbose=False)
    assert all(math.isfinite(metrics[key]) for key in (KEY_METRIC_ISC_MEAN, KEY_METRIC_FID, KEY_METRIC_KID_MEAN))


def test_extractor_returns_features_in_requested_order_and_resizes_28px(tiny_weights):
    name = register_extractor(tiny_weights)
    extractor = create_feature_extractor(name, ["logits", "features"], cuda=False,
                                         feature_extractor_weights_path=str(tiny_weights), verbose=False)
    padded, _ = random_split(4, seed=4)
    small = padded[:, :, 2:30, 2:30]
    with torch.no_grad():
        logits, features = extractor(gray_as_fidelity_passes_it(small))
        resized = F.interpolate(small.float() / 127.5 - 1, size=(32, 32), mode="bilinear", antialias=True)
        expected_resized = extractor.classifier(resized)
    assert logits.shape == (4, 10) and features.shape == (4, FEATURE_DIM)
    torch.testing.assert_close(logits, expected_resized)


def test_extractor_name_follows_the_weights(tmp_path, tiny_weights):
    other = tmp_path / "other.pt"
    train_tiny(other, seed=1)
    assert extractor_name(tiny_weights).startswith("fmnist-classifier-")
    assert extractor_name(other) != extractor_name(tiny_weights)
    assert register_extractor(other) == extractor_name(other)


def test_cli_trains_from_idx_files(tmp_path, capsys):
    write_fashion_mnist(tmp_path, n_train=64, n_test=16)
    images, labels = load_labeled_fashion_mnist(tmp_path, train=True)
    assert images.shape == (64, 1, 32, 32) and labels.shape == (64,) and labels.dtype == torch.int64
    out = tmp_path / "cache" / "clf.pt"
    record = main(["--data-root", str(tmp_path), "--out", str(out), "--epochs", "1", "--no-progress"])
    assert record["train_size"] == 64 and out.exists()
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out) in printed


@pytest.mark.slow
def test_real_classifier_reaches_90_percent(real_fashion_mnist):
    _, record = load_classifier(real_fashion_mnist.classifier, "cpu")
    assert record["epochs"] == DEFAULT_EPOCHS and record["train_size"] == 60000
    assert record["test_accuracy"] >= 0.90
    print(f"Fashion-MNIST classifier test accuracy: {record['test_accuracy']:.4f}")


def test_a_run_records_its_classifier_and_resumes_only_with_the_same_one(tiny_weights, tiny_config, tmp_path):
    from benchmark.checkpoint import CheckpointError
    from benchmark.contract import read_jsonl
    from benchmark.evaluation import file_digest
    from benchmark.trainer import Trainer

    other = tmp_path / "retrained.pt"
    train_tiny(other, seed=1)  # the same recipe, another seed: as a retraining on another machine gives
    assert file_digest(str(other)) != file_digest(str(tiny_weights))

    def trainer(weights: Path, iterations: int) -> Trainer:
        return Trainer(tiny_config("eval=fmnist", "eval.smoke_metrics=[fmnist_is500_2splits]",
                                   f"eval.classifier={weights}", f"eval.cache_root={tmp_path / 'cache'}",
                                   f"budget.iterations={iterations}"), tmp_path / "run")

    result = trainer(tiny_weights, 2).fit()
    expected = {"fmnist": f"fmnist-{file_digest(str(tiny_weights))}"}
    assert result["evaluator"] == expected
    assert [r["evaluator"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "metrics" in r] == [expected]
    with pytest.raises(CheckpointError, match=f"{expected['fmnist']} in the checkpoint, fmnist-"):
        trainer(other, 4).resume()  # its curve would change feature space halfway
    assert trainer(tiny_weights, 4).fit()["iteration"] == 4  # the same weights, anywhere: it goes on

    # measured again with the other weights (to compare with a reference measured with them), the record
    # keeps no number of the first classifier
    from benchmark.evaluate import evaluate_run
    evaluate_run(tmp_path / "run", "fmnist_is500_3splits", "cpu", [f"eval.classifier={other}"])
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["evaluator"] == {"fmnist": f"fmnist-{file_digest(str(other))}"}
    assert set(result["metrics"]) == {"fmnist_is500_3splits", "fmnist_is500_3splits_std"}
