"""The live view of a run (benchmark/run_logger.py) and of a sweep (analysis/tensorboard.py)."""
import importlib.util
import json
import math

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch.utils.tensorboard import SummaryWriter

from analysis.tensorboard import build_view, run_names
from benchmark.config import CONF, ConfigError, compose_config, validate
from benchmark.contract import read_jsonl
from benchmark.run_logger import flatten_row
from benchmark.trainer import Trainer
from tests.helpers import run_cli

RING8 = ["dataset=ring8", "budget=smoke", "progress=false"]


def read_events(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def expected_series(rows) -> dict[str, list[tuple[int, float]]]:
    """What the events must hold: each row's values under its own names, at its iteration, the first
    value of a step standing (a train and an eval row of one iteration both carry `seconds`)."""
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        for name, value in flatten_row(row).items():
            series.setdefault(name, {}).setdefault(row["iteration"], value)
    return {name: sorted(steps.items()) for name, steps in series.items()}


def same_float32(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or np.float32(a) == np.float32(b)


def assert_events_equal_rows(run_dir) -> None:
    rows = read_jsonl(run_dir / "metrics.jsonl")
    events = read_events(run_dir)
    expected = expected_series(rows)
    assert set(events.Tags()["scalars"]) == set(expected)
    for name, want in expected.items():
        got = [(e.step, e.value) for e in events.Scalars(name)]
        assert [s for s, _ in got] == [s for s, _ in want], name  # the same steps, none repeated
        assert all(same_float32(g, w) for (_, g), (_, w) in zip(got, want, strict=True)), name


def test_every_metrics_row_reads_back_from_the_events_under_its_names(tmp_path):
    cfg = compose_config([*RING8, "regularizer=sn", "budget.iterations=4"])
    assert Trainer(cfg, tmp_path).fit()["status"] == "completed"
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["kind"] for r in rows] == ["train", "train", "eval", "train", "train", "eval"]
    assert_events_equal_rows(tmp_path)
    events = read_events(tmp_path)
    names = set(events.Tags()["scalars"])
    assert {"d_loss", "g_loss", "penalty", "eval_seconds", "metrics/mixture10k_modes"} <= names
    assert {f"sigma_max/{layer}" for layer in rows[0]["sigma_max"]} <= names
    # the sample grid of each sample step (the final grid falls on step 4: logged once)
    assert [e.step for e in events.Images("samples")] == [2, 4]
    # the run's configuration as TensorBoard hparams, in the run itself
    content = events.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data.content
    hparams = hparams_metadata.parse_session_start_info_plugin_data(content).hparams
    assert hparams["regularizer.name"].string_value == "sn"
    assert hparams["setting.lr"].number_value == pytest.approx(cfg.setting.lr)
    assert hparams["seed"].number_value == 0 and "device" not in hparams


def test_a_resumed_run_continues_its_curves_without_repeated_steps(tmp_path, monkeypatch):
    cfg = compose_config([*RING8, "regularizer=sn", "eval=none", "budget.iterations=4",
                          "budget.checkpoint_every=2"])
    killed = Trainer(cfg, tmp_path)
    original = killed.train_one_update

    def die_after_checkpoint():
        if killed.iteration == 3:  # iteration 2 is checkpointed; 3 is logged (to the events too), not saved
            raise KeyboardInterrupt
        original()

    monkeypatch.setattr(killed, "train_one_update", die_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert [e.step for e in read_events(tmp_path).Scalars("d_loss")] == [1, 2, 3]

    assert Trainer(cfg, tmp_path).fit()["status"] == "completed"
    assert len(list((tmp_path / "tb").iterdir())) == 2  # one event file per process
    assert [r["iteration"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    assert_events_equal_rows(tmp_path)  # step 3 is the resumed process's, once


def test_a_row_key_added_later_is_logged_under_its_own_names():
    row = {"schema": 1, "kind": "eval", "iteration": 7, "seconds": 1.5, "eval_error": "ValueError: x",
           "lipschitz": {"operator_norm": {"conv1": 2.0, "conv2": None}, "gradient_norms": [0.5, 1]}}
    assert flatten_row(row) == {"seconds": 1.5, "eval_error": "ValueError: x", "lipschitz/operator_norm/conv1": 2.0,
                                "lipschitz/operator_norm/conv2": pytest.approx(math.nan, nan_ok=True),
                                "lipschitz/gradient_norms/0": 0.5, "lipschitz/gradient_norms/1": 1.0}


def test_logger_choice_is_not_part_of_a_runs_name_or_identity():
    excluded = set(compose_config([], return_hydra_config=True).hydra.job.config.override_dirname.exclude_keys)
    for path in (CONF / "logger").glob("*.yaml"):
        keys = {f"logger.{k}" for k in yaml.safe_load(path.read_text())}
        assert {"logger", *keys} <= excluded, path.name
    from benchmark.checkpoint import fingerprint
    assert fingerprint(compose_config(["logger=none"])) == fingerprint(compose_config(["logger=tensorboard"]))


def test_an_unknown_logger_or_its_missing_package_is_named_before_training(monkeypatch):
    with pytest.raises(ConfigError, match="logger.name='tensorbored'"):
        validate(compose_config(["logger.name=tensorbored", "device=cpu"]))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"the wandb package is not installed here \(pip install -e '\.\[wandb\]'\)"):
        validate(compose_config(["logger=wandb", "device=cpu"]))


def fake_run(run_dir, *overrides: str, events: bool = True) -> None:
    """A finished run's record and its events folder, as a trainer leaves them (no training)."""
    cfg = compose_config(["dataset=ring8", "setting=B", *overrides])
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps({
        "schema": 1, "status": "completed", "iteration": 2, "iterations_planned": 2,
        "config": OmegaConf.to_container(cfg, resolve=True)}))
    if events:
        with SummaryWriter(str(run_dir / "tb")) as writer:
            writer.add_scalar("d_loss", 1.0, 1)


def test_a_sweeps_runs_appear_in_tensorboard_under_readable_names(tmp_path):
    sweep = tmp_path / "multirun" / "grid"
    for i, overrides in enumerate([("regularizer=sn", "seed=0"), ("regularizer=sn", "seed=1"),
                                   ("regularizer=none", "seed=0"), ("regularizer=sn", "model.hidden=64")]):
        fake_run(sweep / f"{i},{'_'.join(overrides)}", *overrides)
    fake_run(sweep / "logger=none", "regularizer=wn", events=False)  # nothing to show

    names = run_names([sweep])
    assert set(names) == {"sn/B/model.hidden=128/seed=0", "sn/B/model.hidden=128/seed=1", "none/B/model.hidden=128/seed=0",
                          "sn/B/model.hidden=64/seed=0"}
    view = tmp_path / "view"
    build_view(names, view)
    # TensorBoard's own loader finds each run through its link, under its name
    loader = EventMultiplexer()
    loader.AddRunsFromDirectory(str(view))
    loader.Reload()
    assert set(loader.Runs()) == set(names)
    assert all(loader.Scalars(name, "d_loss")[0].value == 1.0 for name in names)

    # rebuilt as the sweep goes on: a new run appears, a vanished one goes
    fake_run(sweep / "late", "regularizer=none", "seed=1")
    build_view(run_names([sweep]), view)
    assert (view / "none/B/model.hidden=128/seed=1").is_symlink()
    build_view({"sn/B/model.hidden=128/seed=0": names["sn/B/model.hidden=128/seed=0"]}, view)
    assert sorted(p.relative_to(view).as_posix() for p in view.rglob("*") if p.is_symlink()) == [
        "sn/B/model.hidden=128/seed=0"]
    assert not (view / "none").exists()


def test_wandb_offline_writes_its_run_files_in_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_config([*RING8, "regularizer=sn", "eval=none", "logger=wandb"])
    assert Trainer(cfg, tmp_path).fit()["status"] == "completed"
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    assert not (tmp_path / "tb").exists()


@pytest.mark.slow
def test_a_cli_run_writes_events_that_make_tensorboard_shows(tmp_path):
    proc = run_cli("regularizer=sn", *RING8, "eval=none", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = next(p for p in (tmp_path / "outputs").iterdir() if not p.name.startswith("."))
    assert run_names([tmp_path / "outputs"]) == {"sn/A/seed=0": (run_dir / "tb").resolve()}
    assert_events_equal_rows(run_dir)
