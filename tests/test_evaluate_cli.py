import json

import pytest

from benchmark import evaluate, prefetch
from benchmark.config import compose_config
from benchmark.trainer import Trainer
from tests.datasets_on_disk import write_fashion_mnist


@pytest.fixture
def ring_run(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(compose_config(["dataset=ring8", "budget=smoke", "progress=false"]), run_dir).fit()
    return run_dir


def test_reevaluating_a_run_merges_new_protocols_into_result_json(ring_run):
    before = json.loads((ring_run / "result.json").read_text())["metrics"]
    report = evaluate.main([str(ring_run), "--metrics", "mixture2k"])
    after = json.loads((ring_run / "result.json").read_text())
    assert report["iteration"] == 2 and set(report["metrics"]) == {"mixture2k_modes", "mixture2k_high_quality",
                                                                    "mixture2k_kl"}
    assert after["metrics"] == {**before, **report["metrics"]}  # the old protocol's numbers are kept
    assert after["metrics_iteration"] == 2


def test_real_data_reference_scores_the_training_set_as_the_paper_does(tmp_path):
    out = tmp_path / "ring8.json"
    report = evaluate.main(["--real", "ring8", "--out", str(out)])
    assert report["split"] == "train" and report["metrics"]["mixture10k_modes"] == 8
    assert json.loads(out.read_text())["metrics"] == report["metrics"]
    held_out = evaluate.main(["--real", "ring8", "--split", "test", "--out", str(tmp_path / "test.json")])
    assert held_out["split"] == "test" and held_out["metrics"] != report["metrics"]


def test_evaluate_refuses_a_directory_without_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        evaluate.main([str(tmp_path)])
    assert err.value.code == 2 and "is not a run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        evaluate.main(["--real", "ring8", "--metrics", "fid5k"])
    assert err.value.code == 2 and "valid forms" in capsys.readouterr().err


def test_prefetch_trains_the_classifier_and_caches_real_statistics(tmp_path):
    write_fashion_mnist(tmp_path / "data", n_train=128, n_test=32)
    cache = tmp_path / "cache"
    done = prefetch.main(["--datasets", "fashion_mnist", "--device", "cpu", f"data_root={tmp_path / 'data'}",
                          f"eval.cache_root={cache}", "eval.metrics=[fmnist_fid100_train,fmnist_kid100_train]",
                          "eval.kid_subset_size=50", "progress=false"])
    assert done == ["fashion_mnist:fmnist_fid100_train", "fashion_mnist:fmnist_kid100_train"]
    assert (cache / "fmnist_classifier.pt").is_file()
    names = sorted(p.name.rsplit("-", 1)[-1] for p in cache.glob("real-fashion_mnist32-*-train-fmnist-*"))
    assert names == ["features.pt", "fidstats.pt"]
