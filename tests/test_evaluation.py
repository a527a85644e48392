import json

import numpy as np
import pytest
import scipy.linalg
import torch

from benchmark.config import compose_config
from benchmark.contract import read_jsonl
from benchmark.data import mixture_modes, sample_mixture
from benchmark.evaluation import (
    EvaluationSetupError,
    Evaluator,
    Protocol,
    fid_statistics,
    frechet_distance,
    inception_score,
    kernel_distance,
    mixture_metrics,
)
from benchmark.trainer import Trainer


def test_protocol_names_carry_counts_and_reference():
    assert Protocol.parse("is50k_10splits") == Protocol("is50k_10splits", "is", "inception", 50000, None, 10)
    assert Protocol.parse("fid5k_10k") == Protocol("fid5k_10k", "fid", "inception", 5000, 10000)
    assert Protocol.parse("fid50k_train").real is None
    assert Protocol.parse("fmnist_kid10k_train").space == "fmnist"
    assert Protocol.parse("mixture10k").num_fake == 10000
    with pytest.raises(EvaluationSetupError, match=r"valid forms: \[fmnist_\]is<N>_<S>splits"):
        Protocol.parse("fid")


def test_fid_of_a_set_against_itself_is_zero():
    x = torch.randn(2000, 8)
    assert frechet_distance(x, fid_statistics(x)) == pytest.approx(0.0, abs=1e-6)


def test_fid_between_gaussian_sets_equals_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3000, 6)) @ rng.normal(size=(6, 6)) + 1.0
    b = rng.normal(size=(3000, 6)) * 0.5 - 0.3
    mu1, mu2 = a.astype(np.float32).mean(0).astype(np.float64), b.astype(np.float32).mean(0).astype(np.float64)
    s1, s2 = np.cov(a.astype(np.float32), rowvar=False), np.cov(b.astype(np.float32), rowvar=False)
    closed = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    ours = frechet_distance(torch.from_numpy(a).float(), fid_statistics(torch.from_numpy(b).float()))
    assert ours == pytest.approx(closed, rel=1e-4)


def test_inception_score_is_one_for_constant_and_k_for_confident_balanced_predictions():
    constant = torch.zeros(1000, 10)
    constant[:, 3] = 50
    assert inception_score(constant, splits=10)[0] == pytest.approx(1.0, abs=1e-6)
    confident = torch.full((1000, 10), -50.0)
    confident[torch.arange(1000), torch.arange(1000) % 10] = 50
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 16, generator=g), torch.randn(600, 16, generator=g)
    same, _ = kernel_distance(a, b, subsets=20, subset_size=200, seed=0)
    shifted, _ = kernel_distance(a, b + 1.0, subsets=20, subset_size=200, seed=0)
    assert abs(same) < 0.01 < shifted


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_perfect_sampler_covers_all_modes_and_one_mode_sampler_covers_one(name):
    modes, std = mixture_modes(name), {"ring8": 0.02, "grid25": 0.05}[name]
    perfect = mixture_metrics(sample_mixture(name, 10000, std, seed=1), modes, std, 0.1)
    assert perfect["modes"] == len(modes)
    # a 2-D Gaussian puts 1 - exp(-9/2) = 98.9% of its mass within 3 std
    assert perfect["high_quality"] == pytest.approx(1 - np.exp(-4.5), abs=0.005)
    assert perfect["kl"] < 0.01
    collapsed = mixture_metrics(modes[2] + std * torch.randn(10000, 2), modes, std, 0.1)
    assert collapsed["modes"] == 1 and collapsed["kl"] == pytest.approx(np.log(len(modes)), rel=1e-6)
    off = mixture_metrics(torch.full((100, 2), 50.0), modes, std, 0.1)
    assert off == {"modes": 0, "high_quality": 0.0, "kl": None}


def evaluator_for(dataset: str, metrics: list[str], data: torch.Tensor, **eval_overrides):
    overrides = [f"dataset={dataset}", f"eval.metrics=[{','.join(metrics)}]"]
    overrides += [f"eval.{k}={v}" for k, v in eval_overrides.items()]
    cfg = compose_config(overrides)
    return Evaluator(cfg.eval, cfg.dataset, data, torch.device("cpu"))


@pytest.mark.parametrize("metrics,message", [
    (["fid5k_60k"], "asks for 60000 real images, cifar10's training set has 100"),
    (["kid50_50"], "eval.kid_subset_size=1000 exceeds the 50 samples"),
    (["mixture10k"], "is for 2-D points"),
    (["fmnist_fid10k_train"], "are for dataset=fashion_mnist"),
    (["is10_20splits"], "20 splits of 10 samples"),
])
def test_impossible_counts_are_refused_before_computation(metrics, message):
    images = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(EvaluationSetupError, match=message):
        evaluator_for("cifar10", metrics, images)


def test_missing_inception_weights_offline_name_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))
    images = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(EvaluationSetupError) as err:
        evaluator_for("cifar10", ["fid10_10"], images)
    assert "weights-inception-2015-12-05-6726825d.pth" in str(err.value) and "make prefetch" in str(err.value)
    with pytest.raises(EvaluationSetupError, match="no such file"):
        evaluator_for("cifar10", ["fid10_10"], images, inception_weights=str(tmp_path / "none.pth"))


def test_mixture_run_evaluates_periodically_and_reports_final_metrics(tmp_path):
    cfg = compose_config(["dataset=ring8", "budget.iterations=4", "budget.log_every=2", "budget.checkpoint_every=2",
                          "eval.every=2", "progress=false"])
    result = Trainer(cfg, tmp_path).fit()
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "metrics" in r]
    assert [r["iteration"] for r in rows] == [2, 4]
    assert all(r["eval_seconds"] > 0 for r in rows)
    assert set(rows[-1]["metrics"]) == {"mixture10k_modes", "mixture10k_high_quality", "mixture10k_kl",
                                        "points_prc1k_1k_precision", "points_prc1k_1k_recall"}
    assert result["metrics"] == rows[-1]["metrics"] and result["metrics_iteration"] == 4
    assert json.loads((tmp_path / "result.json").read_text())["metrics"] == rows[-1]["metrics"]


def test_evaluation_uses_the_same_latents_every_time(tmp_path):
    cfg = compose_config(["dataset=ring8", "budget=smoke", "progress=false"])
    trainer = Trainer(cfg, tmp_path)
    first = trainer.evaluator.evaluate(trainer.G, cfg.z_dim)
    assert trainer.G.training  # put back in train mode
    assert trainer.evaluator.evaluate(trainer.G, cfg.z_dim) == first


def test_a_failing_evaluation_is_recorded_and_training_goes_on(tmp_path, monkeypatch):
    cfg = compose_config(["dataset=ring8", "budget=smoke", "progress=false"])
    trainer = Trainer(cfg, tmp_path)
    monkeypatch.setattr(trainer.evaluator, "evaluate", lambda *a, **k: (_ for _ in ()).throw(MemoryError("boom")))
    result = trainer.fit()
    assert result["status"] == "completed" and result["metrics"] == {}
    errors = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "eval_error" in r]
    assert errors and "MemoryError: boom" in errors[0]["eval_error"]
    assert (tmp_path / "checkpoint.pt").exists()


@pytest.fixture(scope="session")
def random_inception_weights(tmp_path_factory):
    """A weights file of torch-fidelity's Inception architecture with random values (the real
    ones come from the web): proves the wiring; the numbers mean nothing."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        model = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("weights") / "inception-random.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.slow
def test_inception_path_runs_end_to_end_on_cpu_with_a_weights_file(tmp_path, random_inception_weights):
    from benchmark.models import build_models
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    evaluator = evaluator_for("cifar10", ["is40_2splits", "fid40_60", "kid40_60"], images,
                              inception_weights=str(random_inception_weights), cache_root=str(tmp_path),
                              kid_subset_size=20, batch_size=25)
    G, _ = build_models(compose_config(["model.width=0.0625"]).model, (3, 32, 32), 128)
    first = evaluator.evaluate(G, 128)
    assert set(first) == {"is40_2splits", "is40_2splits_std", "fid40_60", "kid40_60", "kid40_60_std"}
    assert all(isinstance(v, float) and np.isfinite(v) for v in first.values())
    assert first["is40_2splits"] >= 1.0 and first["fid40_60"] > 0
    cached = sorted(p.name for p in tmp_path.glob(f"real-cifar1032-{evaluator.data_digest}-train60-inception-*"))
    assert len(cached) == 2 and cached[0].endswith("features.pt") and cached[1].endswith("fidstats.pt")
    stamps = [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("real-*"))]
    assert evaluator.evaluate(G, 128) == first  # same latents, statistics read back from the cache
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("real-*"))] == stamps
    # held-out real images instead of G: the paper's "real data" reference
    real = evaluator.evaluate(samples=images[40:])
    assert real["fid40_60"] < first["fid40_60"]
    # other data under the same dataset name gets statistics of its own, never the cached ones
    other = evaluator_for("cifar10", ["fid40_60"], 255 - images, inception_weights=str(random_inception_weights),
                          cache_root=str(tmp_path), batch_size=25)
    assert other.data_digest != evaluator.data_digest
    assert other.evaluate(G, 128)["fid40_60"] != first["fid40_60"]


@pytest.mark.slow
def test_fmnist_fid_of_the_test_set_is_far_below_noise(real_fashion_mnist):
    fm = real_fashion_mnist
    test = data_load_test(fm)
    noise = torch.randint(0, 256, test.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    real = fm.evaluator.evaluate(samples=test)
    fake = fm.evaluator.evaluate(samples=noise)
    print(f"fmnist real test vs train: {real}\nfmnist noise vs train: {fake}")
    assert real["fmnist_fid10k_train"] * 20 < fake["fmnist_fid10k_train"]
    assert real["fmnist_kid10k_train"] * 20 < fake["fmnist_kid10k_train"]
    assert real["fmnist_is10k_10splits"] > 7 > fake["fmnist_is10k_10splits"]  # 10 classes, confidently told apart


def data_load_test(fm) -> torch.Tensor:
    from benchmark.data import load_dataset
    return load_dataset(fm.cfg.dataset, fm.data_root, train=False)


@pytest.mark.slow
def test_fmnist_smoke_run_reports_classifier_metrics(real_fashion_mnist, tmp_path):
    from tests.helpers import TINY_IMAGES
    fm = real_fashion_mnist
    cfg = compose_config([*TINY_IMAGES, f"data_root={fm.data_root}", f"eval.cache_root={fm.cache_root}",
                          "budget=smoke"])
    result = Trainer(cfg, tmp_path).fit()
    assert set(result["metrics"]) == {"fmnist_is500_2splits", "fmnist_is500_2splits_std", "fmnist_fid500_train",
                                      "fmnist_kid500_train", "fmnist_kid500_train_std",
                                      "fmnist_prc100_100_precision", "fmnist_prc100_100_recall"}
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "metrics" in r]
    assert [r["iteration"] for r in rows] == [2] and rows[0]["metrics"] == result["metrics"]


def test_evaluation_does_not_change_what_is_trained(tmp_path, image_root):
    """Building the classifier's extractor draws random numbers: they must not move the models' init."""
    from tests.helpers import TINY_IMAGES
    runs = [Trainer(compose_config([*TINY_IMAGES, f"data_root={image_root}", "budget=smoke", f"eval={preset}",
                                    f"eval.cache_root={tmp_path / 'cache'}"]), tmp_path / preset).fit()
            for preset in ("none", "fmnist")]
    assert runs[0]["metrics"] == {} and runs[1]["metrics"]
    assert runs[0]["final"] == runs[1]["final"] and runs[0]["spectral_norms"] == runs[1]["spectral_norms"]


def test_precision_and_recall_separate_collapse_from_coverage():
    """Improved precision / recall (k = 3) of 2-D points: the data against itself is ~1 / ~1; a G
    collapsed onto one of ring8's modes is precise (its samples are on the data) but recalls ~1/8."""
    from benchmark.data import mixture_modes, sample_mixture
    cfg = compose_config(["dataset=ring8", "eval.metrics=[points_prc2k_2k]"])
    data = sample_mixture("ring8", 4000, 0.02, seed=0)
    evaluator = Evaluator(cfg.eval, cfg.dataset, data, torch.device("cpu"))
    fresh = sample_mixture("ring8", 2000, 0.02, seed=1)
    same = evaluator.evaluate(samples=fresh)
    assert same["points_prc2k_2k_precision"] > 0.95 and same["points_prc2k_2k_recall"] > 0.95
    collapsed = mixture_modes("ring8")[0] + 0.02 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(2))
    one_mode = evaluator.evaluate(samples=collapsed)
    assert one_mode["points_prc2k_2k_precision"] > 0.95
    assert one_mode["points_prc2k_2k_recall"] == pytest.approx(1 / 8, abs=0.03)


def test_a_metric_kind_added_to_the_registry_is_computed_and_analysed(tmp_path):
    """Adding a metric is one registry entry plus its compute function: the evaluator computes it
    and the analysis ranks it (lower is better here) with no other edit."""
    import re

    from analysis.collect import collect
    from analysis.compare import Comparison
    from benchmark.contract import METRIC_KINDS, Column, MetricKind
    from benchmark.evaluation import COMPUTE

    METRIC_KINDS.add(MetricKind(
        name="radius", pattern=re.compile(r"^radius(?P<n>\d+k?)$"), form="radius<N>", space="points",
        columns=(Column(key="radius", suffix="", higher_is_better=False, role="quality", worst=None,
                        description="mean distance to 0"),)))
    COMPUTE.add(lambda ev, p, fake, space: {p.name: float(fake["points"][:p.num_fake].norm(dim=1).mean())},
                name="radius")
    try:
        for reg in ("none", "sn"):
            cfg = compose_config(["dataset=ring8", f"regularizer={reg}", "budget=smoke", "progress=false",
                                  "eval.metrics=[radius500]"])
            Trainer(cfg, tmp_path / reg).fit()
        comparison = Comparison(*collect([tmp_path]))
        assert comparison.metrics() == ["radius500"]
        best = comparison.best_settings("radius500")
        assert len(best) == 2 and best["mean"].notna().all()
    finally:
        METRIC_KINDS.remove("radius")
        COMPUTE.remove("radius")
