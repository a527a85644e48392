"""The battery of bad inputs and faults a user meets (issue 14): each one ends in one message that
names the bad key or file, exit status 2, and a run directory exactly as it was.

Every case relaunches a finished run (or a fresh directory) in-process through run.py's `execute`,
the path `python benchmark/run.py ...` takes to its exit status; validation comes before any data is
read, so most cases take a fraction of a second."""
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from benchmark.config import compose_config
from benchmark.run import EXIT_BAD_INPUT, execute
from benchmark.run_lock import locked

# A finished run on the 2-D ring, relaunched with one bad value at a time.
BASE = ["dataset=ring8", "budget=smoke", "progress=false", "device=cpu"]

# (overrides, texts the message must contain: the key or file, and what is valid where it says so)
CONFIG_CASES = [
    (["diagnostics.samples=0"], ["diagnostics.samples=0", "integer >= 1"]),
    (["diagnostics.ascent_radius=-1"], ["diagnostics.ascent_radius=-1", "> 0"]),
    (["regularizer=wc", "regularizer.params=bias"], ["regularizer.params='bias'", "weights, all"]),
    (["regularizer=combo", "regularizer.parts=[sn,wn]"], ["regularizer.parts=[sn,wn]", "reparametrize"]),
    (["regularizer=combo", "regularizer.parts=[fn,wgangp]", "+regularizer.options.wgangp.weight=-1"],
     ["regularizer.options.wgangp.weight=-1"]),
    (["setting.lr_decay=cosine"], ["setting.lr_decay='cosine'", "none, linear"]),
    (["setting.g_batch_multiplier=0"], ["setting.g_batch_multiplier=0"]),
    (["regularizer=wc", "regularizer.c=-1"], ["regularizer.c=-1", "> 0"]),
    (["regularizer=wc", "regularizer.c=0"], ["regularizer.c=0"]),
    (["regularizer=wc", "regularizer.c=inf"], ["regularizer.c=inf", "finite"]),
    (["regularizer=wc", "regularizer.c=nan"], ["regularizer.c=nan"]),
    (["regularizer=svc", "regularizer.every=0"], ["regularizer.every=0", "integer >= 1"]),
    (["regularizer=svc", "regularizer.every=2.5"], ["regularizer.every=2.5"]),
    (["regularizer=svc", "regularizer.max_singular_value=-1"], ["regularizer.max_singular_value"]),
    (["regularizer=ortho", "regularizer.beta=-1"], ["regularizer.beta=-1", ">= 0"]),
    (["regularizer=sn", "regularizer.n_power_iterations=0"], ["regularizer.n_power_iterations=0"]),
    (["regularizer=sn", "regularizer.eps=0"], ["regularizer.eps=0"]),
    (["+regularizer.foo=1"], ["regularizer.foo", "no such option", "n_power_iterations"]),
    # a key no conf file declares is refused wherever + adds it, with the keys valid there
    (["+foo=1"], ["foo=1: no such key", "valid at the top level", "batch_size", "z_dim"]),
    (["+model.bar=1"], ["model.bar=1: no such key", "valid in model", "hidden"]),
    (["+speed.turbo=true"], ["speed.turbo=True: no such key", "valid in speed", "tf32"]),
    (["regularizer=wgangp", "regularizer.weight=-1"], ["regularizer.weight=-1"]),
    (["regularizer=gangp", "regularizer.weight=inf"], ["regularizer.weight=inf"]),
    (["regularizer=bn", "regularizer.momentum=2"], ["regularizer.momentum=2", "[0, 1]"]),
    (["regularizer=wn", "regularizer.eps=-1"], ["regularizer.eps=-1"]),
    (["regularizer.name=spectral"], ["regularizer.name='spectral'", "sn"]),
    (["setting.lr=inf"], ["setting.lr=inf", "finite"]),
    (["setting.lr=nan"], ["setting.lr=nan"]),
    (["setting.lr=-1"], ["setting.lr=-1"]),
    (["setting.lr=0"], ["setting.lr=0"]),
    (["setting.beta1=1"], ["setting.beta1=1", "[0, 1)"]),
    (["setting.beta2=-0.1"], ["setting.beta2=-0.1"]),
    (["setting.n_dis=0"], ["setting.n_dis=0"]),
    (["setting.n_dis=1.5"], ["setting.n_dis=1.5"]),
    (["batch_size=0"], ["batch_size=0"]),
    (["batch_size=200000"], ["batch_size=200000", "100000 samples"]),
    (["dataset.num_samples=0"], ["dataset.num_samples=0"]),
    (["dataset.std=0"], ["dataset.std=0"]),
    (["z_dim=0"], ["z_dim=0"]),
    (["seed=-1"], ["seed=-1"]),
    (["budget.iterations=0"], ["budget.iterations=0"]),
    (["budget.log_every=0"], ["budget.log_every=0"]),
    (["budget.log_every=2", "budget.checkpoint_every=3"], ["budget.checkpoint_every=3", "multiple"]),
    (["model=cnn"], ["model=cnn", "model=mlp"]),
    (["model.hidden=0"], ["model.hidden=0"]),
    (["model.depth=-1"], ["model.depth=-1"]),
    (["model.leaky_slope=inf"], ["model.leaky_slope=inf"]),
    (["eval.metrics=mixture10k"], ["eval.metrics='mixture10k'", "list"]),
    (["eval.metrics=[mixture0]"], ["mixture0", ">= 1"]),
    (["eval.metrics=[fid5k_10k]"], ["fid5k_10k", "points"]),
    (["eval.metrics=[bogus]"], ["bogus", "valid forms"]),
    (["eval.every=0"], ["eval.every=0"]),
    (["eval.mixture_covered_fraction=2"], ["eval.mixture_covered_fraction=2"]),
    (["eval.inception_weights=/nonexistent/weights.pth"], ["eval.inception_weights", "/nonexistent/weights.pth"]),
    (["device=tpu"], ["device='tpu'", "auto, cpu, cuda"]),
    (["speed.compile=fast"], ["speed.compile='fast'"]),
    (["speed.tf32=maybe"], ["speed.tf32='maybe'"]),
    (["progress=3"], ["progress=3"]),
    (["loss.name=hinge2"], ["loss.name='hinge2'"]),
    # every bad key of a command line in one message
    (["regularizer=wc", "regularizer.c=-1", "setting.lr=inf", "batch_size=0"],
     ["regularizer.c=-1", "setting.lr=inf", "batch_size=0"]),
]

IMAGES = ["dataset=fashion_mnist", "model.width=0.0625", "batch_size=16"]
IMAGE_CASES = [
    ([*IMAGES, "dataset.size=30"], ["dataset.size=30", "divisible by 8"]),
    ([*IMAGES, "dataset.size=27"], ["dataset.size=27", ">= 28"]),
    ([*IMAGES, "model.width=inf"], ["model.width=inf"]),
    ([*IMAGES, "model.width=0"], ["model.width=0"]),
    (["dataset=fashion_mnist", "model=mlp"], ["model=mlp", "images"]),
    ([*IMAGES, "model=resnet", "dataset.size=40"], ["dataset.size=40", "resnet"]),
    ([*IMAGES, "eval.metrics=[mixture10k]"], ["mixture10k", "images"]),
    (["dataset=cifar10", "eval.metrics=[fmnist_fid10k_train]"], ["fmnist_fid10k_train", "fashion_mnist"]),
    (["dataset=stl10", "dataset.split=everything"], ["dataset.split='everything'", "train+unlabeled"]),
    (["dataset=cifar10", "eval.metrics=[fid5k_0]"], ["fid5k_0"]),
    # counts against the dataset's known size: refused by the config check, before any data is read
    (["dataset=cifar10", "eval.metrics=[fid5k_60k]"], ["fid5k_60k", "60000 real images", "50000"]),
]


def digest(folder: Path) -> dict:
    """Every file under `folder` (names and contents): what a refused command must leave as it was."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    code, result = execute(compose_config(BASE), run_dir, in_sweep=False)
    assert code == 0 and result["status"] == "completed"
    return run_dir


@pytest.fixture
def relaunch(finished_run, tmp_path, capsys):
    """Relaunch a copy of the finished run with `overrides`; (exit status, stderr, dir unchanged?)."""
    def run(overrides, run_dir: Path | None = None, base=BASE):
        if run_dir is None:
            run_dir = tmp_path / "run"
            shutil.copytree(finished_run, run_dir)
        before = digest(run_dir)
        capsys.readouterr()
        code, _ = execute(compose_config([*base, *overrides]), run_dir, in_sweep=False)
        return code, capsys.readouterr().err, digest(run_dir) == before
    return run


@pytest.mark.parametrize("overrides,texts", CONFIG_CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_a_bad_value_is_refused_by_name_and_the_finished_run_is_untouched(relaunch, overrides, texts):
    code, err, unchanged = relaunch(overrides)
    assert code == EXIT_BAD_INPUT, err
    for text in texts:
        assert text in err, err
    assert "Traceback" not in err
    assert unchanged


@pytest.mark.parametrize("overrides,texts", IMAGE_CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_a_bad_image_setup_is_refused_before_any_data_is_read(relaunch, image_root, tmp_path, overrides, texts):
    # data_root is a folder with no CIFAR-10 / STL-10 at all: any case that read data would fail differently
    code, err, unchanged = relaunch([f"data_root={image_root}", *overrides], run_dir=tmp_path / "fresh")
    assert code == EXIT_BAD_INPUT, err
    for text in texts:
        assert text in err, err
    assert unchanged and not (tmp_path / "fresh").exists()


def test_a_data_root_that_is_a_file_is_named(relaunch, tmp_path):
    not_a_folder = tmp_path / "data.tar"
    not_a_folder.write_bytes(b"x")
    code, err, unchanged = relaunch([*IMAGES, f"data_root={not_a_folder}"])
    assert code == EXIT_BAD_INPUT and f"data_root='{not_a_folder}'" in err and "not a folder" in err
    assert unchanged


# ---------------------------------------------------------------- faults in the run directory and its inputs
def test_a_smaller_budget_never_rewrites_a_finished_run(relaunch):
    code, err, unchanged = relaunch(["budget.iterations=1"])
    assert code == EXIT_BAD_INPUT and "budget.iterations=1" in err and "budget.iterations=2" in err
    assert unchanged


def test_another_config_never_rewrites_a_finished_run(relaunch):
    code, err, unchanged = relaunch(["setting.lr=0.001"])
    assert code == EXIT_BAD_INPUT and "result.json" in err and "different config" in err
    assert unchanged


def test_a_busy_directory_is_refused_naming_its_holder(relaunch, tmp_path, finished_run):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "result.json").unlink()  # something left to train, so the run wants the directory
    with locked(run_dir):
        code, err, unchanged = relaunch([], run_dir=run_dir)
    assert code == EXIT_BAD_INPUT and "in use by" in err and f"pid {os.getpid()}" in err
    assert unchanged


def test_an_unwritable_run_directory_is_found_before_training(relaunch, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, err, unchanged = relaunch([], run_dir=blocker / "run")
    assert code == EXIT_BAD_INPUT and str(blocker / "run") in err and "cannot be created" in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("content", [b"PK\x03\x04 cut short", b"garbage"], ids=["truncated", "garbage"])
def test_an_unreadable_checkpoint_is_named_and_kept(relaunch, tmp_path, finished_run, content):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "result.json").unlink()
    (run_dir / "checkpoint.pt").write_bytes(content)
    code, err, unchanged = relaunch([], run_dir=run_dir)
    assert code == EXIT_BAD_INPUT and str(run_dir / "checkpoint.pt") in err and "cannot be read" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert unchanged


class RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(relaunch, tmp_path, finished_run):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "result.json").unlink()
    marker = tmp_path / "code_ran"
    torch.save({"schema": 1, "G": RunsCode(str(marker))}, run_dir / "checkpoint.pt")
    code, err, unchanged = relaunch([], run_dir=run_dir)
    assert code == EXIT_BAD_INPUT and "checkpoint.pt" in err and "objects other than tensors" in err
    assert "weights_only` set to `False" not in err
    assert not marker.exists() and unchanged


def test_crafted_inception_weights_are_refused_before_torch_fidelity_loads_them(relaunch, image_root, tmp_path):
    marker = tmp_path / "code_ran"
    weights = tmp_path / "weights.pth"
    torch.save({"w": RunsCode(str(marker))}, weights)
    code, err, unchanged = relaunch([*IMAGES, f"data_root={image_root}", "eval.metrics=[fid10_10]",
                                     f"eval.inception_weights={weights}", f"eval.cache_root={tmp_path}"],
                                    run_dir=tmp_path / "fresh")
    assert code == EXIT_BAD_INPUT and str(weights) in err and "refused" in err
    assert not marker.exists() and unchanged


def test_a_truncated_idx_file_is_named_not_reported_missing(relaunch, image_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(image_root, root)
    images = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    code, err, unchanged = relaunch([*IMAGES, f"data_root={root}", "eval=none"], run_dir=tmp_path / "fresh")
    assert code == EXIT_BAD_INPUT and str(images) in err and "truncated" in err and "not found" not in err
    assert unchanged


def test_a_log_damaged_inside_is_named(relaunch, tmp_path, finished_run):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "result.json").unlink()
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "metrics.jsonl").write_text("\n".join(["{not json", *rows]) + "\n")
    code, err, unchanged = relaunch([], run_dir=run_dir)
    assert code == EXIT_BAD_INPUT and "metrics.jsonl, line 1" in err
    assert unchanged
