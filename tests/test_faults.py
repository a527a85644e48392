"""Faults a long sweep meets: two writers on one run directory, a crafted weights file,
torn and unreadable records, a run killed by its scheduler. Each leaves one clear message and never
blocks the other runs. The battery of bad values is tests/test_bad_input_battery.py."""
import gzip
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

import regularizers
from analysis import report, sweep_status
from analysis.collect import collect, write_atomic_text
from benchmark import data, evaluate, evaluation
from benchmark.config import CONF, compose_config
from benchmark.contract import read_jsonl
from benchmark.run import execute
from benchmark.run_lock import RunDirBusyError, holder, locked
from benchmark.trainer import Trainer
from tests.helpers import ROOT, run_cli
from tests.test_analysis import write_run
from tests.test_bad_input_battery import BASE, digest

TORN = '{"schema": 1, "iteration": 99, "d_lo'


@pytest.fixture
def ring_run(tmp_path) -> Path:
    run_dir = tmp_path / "run"
    code, _ = execute(compose_config(BASE), run_dir, in_sweep=False)
    assert code == 0
    return run_dir


# ---------------------------------------------------------------- one writer per run directory
HOLD = "import sys, time; from benchmark.run_lock import locked\nwith locked(sys.argv[1]):\n" \
       "    print('held', flush=True); time.sleep(600)\n"


def hold_in_another_process(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_names_its_live_holder_and_ends_with_it_even_when_killed(tmp_path):
    proc = hold_in_another_process(tmp_path)
    try:
        assert holder(tmp_path)["pid"] == proc.pid
        with pytest.raises(RunDirBusyError, match=f"pid {proc.pid} on"):
            with locked(tmp_path):
                pass
    finally:
        proc.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock with the process
        proc.wait()
    assert (tmp_path / ".lock").exists() and holder(tmp_path) is None  # the file stays; nobody holds it
    with locked(tmp_path):
        assert holder(tmp_path) is None or holder(tmp_path)["pid"] == os.getpid()


@pytest.mark.slow
def test_the_same_command_twice_refuses_the_second_and_bad_relaunches_change_nothing(tmp_path):
    args = ["dataset=ring8", "progress=false", "device=cpu", "eval=none", "model.hidden=16",
            "budget.iterations=100000", "budget.log_every=100", "budget.checkpoint_every=1000"]
    first = subprocess.Popen([sys.executable, str(ROOT / "benchmark" / "run.py"), *args], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = next((p for p in (tmp_path / "outputs").iterdir() if not p.name.startswith(".")), None) if (tmp_path / "outputs").exists() else None
        for _ in range(600):
            run_dir = next((p for p in (tmp_path / "outputs").iterdir() if not p.name.startswith(".")), None) if (tmp_path / "outputs").exists() else None
            if run_dir is not None and (holder(run_dir) or {}).get("pid") == first.pid:
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.1)
        second = run_cli(*args, cwd=tmp_path)
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr and "in use" in second.stderr
        assert first.poll() is None  # the first goes on
    finally:
        first.kill()
        first.wait()
    before = digest(run_dir)
    bad = run_cli(*args, "device=tpu", cwd=tmp_path)  # the same directory (device does not name a run)
    assert bad.returncode == 2 and "device='tpu'" in bad.stderr
    assert digest(run_dir) == before  # .hydra/ included: a refused command rewrites nothing
    start = time.monotonic()
    clip = run_cli("regularizer=wc", "regularizer.c=-1", cwd=tmp_path)
    assert clip.returncode == 2 and "regularizer.c=-1" in clip.stderr and "Traceback" not in clip.stderr
    assert time.monotonic() - start < 120  # seconds on a shared CPU; nothing is loaded
    assert not any(p.is_file() for p in (tmp_path / "outputs" / "regularizer.c=-1,regularizer=wc").rglob("*"))


@pytest.mark.slow
def test_a_sweep_skips_a_busy_run_without_writing_into_it(tmp_path):
    sweep = tmp_path / "sweep"
    busy = sweep / "sn"
    busy.mkdir(parents=True)
    proc = hold_in_another_process(busy)
    try:
        out = run_cli("-m", *BASE, "regularizer=none,sn", f"hydra.sweep.dir={sweep}",
                      "hydra.sweep.subdir=${regularizer.name}", cwd=tmp_path)
        assert not (busy / "result.json").exists() and not (busy / ".hydra").exists()
        status = sweep_status.run_status(busy, sweep_ended=True)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0, out.stderr[-2000:]  # busy is not failed
    assert status["status"] == "skipped-busy" and f"pid {proc.pid}" in status["error"]
    assert "1 completed, 1 skipped-busy" in out.stdout and "in use by" in out.stderr
    assert json.loads((sweep / "none" / "result.json").read_text())["status"] == "completed"


# ---------------------------------------------------------------- files that would run code, or cannot load
def test_the_official_inception_file_passes_by_digest_and_others_must_be_plain_tensors(tmp_path, monkeypatch,
                                                                                        capsys):
    plain = tmp_path / "plain.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, plain)
    assert evaluation.verify_inception_weights(plain) == str(plain)
    assert "not the official Inception weights" in capsys.readouterr().err
    monkeypatch.setattr(evaluation, "OFFICIAL_INCEPTION_SHA256", evaluation.file_digest(str(plain), length=64))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the official file is not unpickled"))
    assert evaluation.verify_inception_weights(plain) == str(plain)
    assert capsys.readouterr().err == ""
    monkeypatch.undo()
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(evaluation.EvaluationSetupError, match="not a state dict"):
        evaluation.verify_inception_weights(listed)


def test_evaluate_names_a_corrupt_checkpoint_without_a_traceback(ring_run, capsys):
    (ring_run / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(SystemExit) as err:
        evaluate.main([str(ring_run), "--metrics", "mixture2k"])
    message = capsys.readouterr().err
    assert err.value.code == 2 and str(ring_run / "checkpoint.pt") in message and "Traceback" not in message


# ---------------------------------------------------------------- torn and unreadable records
def test_resume_drops_a_torn_tail_back_to_the_checkpoint(ring_run):
    (ring_run / "result.json").unlink()
    with open(ring_run / "metrics.jsonl", "a") as f:
        f.write(TORN)  # killed mid-append
    code, result = execute(compose_config([*BASE, "budget.iterations=4", "budget.checkpoint_every=2"]), ring_run,
                           in_sweep=False)
    assert code == 0 and result["iteration"] == 4
    text = (ring_run / "metrics.jsonl").read_text()
    assert TORN not in text
    assert [r["iteration"] for r in read_jsonl(ring_run / "metrics.jsonl") if "d_loss" in r] == [1, 2, 3, 4]


def test_readers_skip_a_torn_tail_with_a_warning_naming_the_file(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    run = write_run(sweep, "sn", "A", 0, "completed", 30.0, 7.0)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(TORN)
    with pytest.warns(UserWarning, match=f"{run / 'metrics.jsonl'}.*torn"):  # the one reader, both sides'
        assert len(read_jsonl(run / "metrics.jsonl")) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs, evals = collect([sweep])
        assert len(runs) == 1 and not evals.empty
        sweep_status.main([str(sweep)])
        assert report.main([str(sweep), "--out", str(tmp_path / "out")]).exists()
    assert "1 completed" in capsys.readouterr().out


def test_a_truncated_result_is_named_and_run_again(ring_run, capsys):
    path = ring_run / "result.json"
    path.write_text(path.read_text()[:40])
    code, result = execute(compose_config(BASE), ring_run, in_sweep=True)
    assert code == 0 and result["status"] == "completed" and not result.get("skipped")
    assert f"{path} cannot be read" in capsys.readouterr().err
    assert json.loads(path.read_text())["status"] == "completed"


def test_one_unreadable_run_is_set_aside_and_never_blocks_the_sweep(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep, "sn", "A", 0, "completed", 30.0, 7.0)
    torn = write_run(sweep, "wn", "A", 0, "completed", 50.0, 6.5)
    (torn / "result.json").write_text('{"schema": 1, "status": "compl')
    with pytest.warns(UserWarning, match=f"{torn} set aside"):
        runs, _ = collect([sweep])
    assert list(runs.regularizer) == ["sn"] and str(torn) in runs.attrs["set_aside"]
    assert sweep_status.run_status(torn)["status"] == "unreadable"
    text = sweep_status.summary(sweep)
    assert "1 completed, 1 unreadable" in text and str(torn / "result.json") in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = report.main([str(sweep), "--out", str(tmp_path / "out")])
    assert "set aside" in path.read_text() and str(torn) in path.read_text()


# ---------------------------------------------------------------- how a run and a sweep end
def test_preemption_says_on_stderr_that_it_saved(tmp_path, capsys, monkeypatch):
    trainer = Trainer(compose_config([*BASE, "budget.iterations=4", "budget.checkpoint_every=4"]), tmp_path)
    original = trainer.train_one_update

    def signalled():
        if trainer.iteration == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        original()

    monkeypatch.setattr(trainer, "train_one_update", signalled)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(SystemExit) as err:
            trainer.fit()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert err.value.code == 128 + signal.SIGTERM
    message = capsys.readouterr().err
    assert "received SIGTERM" in message and "iteration 2" in message and str(tmp_path / "checkpoint.pt") in message


def test_a_failed_run_ends_the_sweep_with_a_nonzero_status(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep, "sn", "A", 0, "completed", 30.0, 7.0)
    write_run(sweep, "none", "A", 0, "failed", None, None)
    config = {"hydra": {"sweep": {"dir": str(sweep)}}}
    with pytest.raises(SystemExit) as err:
        sweep_status.SweepSummary().on_multirun_end(config=_dot(config))
    assert err.value.code == 1
    out = capsys.readouterr().out
    assert "1 completed, 1 failed" in out and "did not finish" in out
    (sweep / "regularizer=none,seed=0,setting=A" / "result.json").unlink()
    shutil.rmtree(sweep / "regularizer=none,seed=0,setting=A")
    sweep_status.SweepSummary().on_multirun_end(config=_dot(config))  # all finished: no exit


def _dot(d: dict):
    from omegaconf import OmegaConf
    return OmegaConf.create(d)


def test_a_run_keeps_its_own_stdout_stderr_and_traceback_in_run_log(tmp_path, capsys, monkeypatch):
    """run.log (benchmark.contract.RUN_LOG), which sweep-status names for a failed run, holds what the
    run printed, its warnings and its crash's traceback, not only logging lines."""
    def fit(self):
        print("a line the run printed")
        warnings.warn("a warning the run gave", stacklevel=1)
        raise RuntimeError("boom in training")

    monkeypatch.setattr(Trainer, "fit", fit)
    with pytest.warns(UserWarning, match="a warning the run gave"):
        code, outcome = execute(compose_config(BASE), tmp_path / "run", in_sweep=True)
    assert code == 1 and outcome["status"] == "failed"
    log = (tmp_path / "run" / "run.log").read_text()
    for text in ("a line the run printed", "a warning the run gave", "Traceback", "RuntimeError: boom in training"):
        assert text in log, log
    assert "a line the run printed" in capsys.readouterr().out  # the terminal still shows it
    assert str(tmp_path / "run" / "run.log") in sweep_status.summary(tmp_path)


# ---------------------------------------------------------------- files written whole and readable by others
def test_analysis_outputs_are_whole_or_absent(tmp_path, monkeypatch):
    path = tmp_path / "report.md"
    write_atomic_text(path, "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_atomic_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_report_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep, "sn", "A", 0, "completed", 30.0, 7.0)
    (tmp_path / "report.txt").write_text("mine")
    with pytest.raises(SystemExit) as err:
        report.main([str(sweep), "--out", str(tmp_path / "report.txt")])
    assert err.value.code == 2 and "report.txt is a file" in capsys.readouterr().err
    assert (tmp_path / "report.txt").read_text() == "mine"


def test_copied_dataset_files_are_readable_by_others(tmp_path, monkeypatch, image_root):
    debian = tmp_path / "debian"
    debian.mkdir()
    for name in data.FASHION_MNIST_FILES:
        with gzip.open(debian / f"{name}.gz", "wb") as f:
            f.write((image_root / "FashionMNIST" / "raw" / name).read_bytes())
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", debian)
    data.load_dataset(compose_config(["dataset=fashion_mnist"]).dataset, tmp_path / "root")
    umask = os.umask(0)
    os.umask(umask)
    for name in data.FASHION_MNIST_FILES:
        assert (tmp_path / "root" / "FashionMNIST" / "raw" / name).stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------- the options every regularizer declares
@pytest.mark.parametrize("name", sorted(regularizers.REGISTRY))
def test_each_regularizer_declares_every_option_its_config_and_constructor_take(name):
    cls = regularizers.REGISTRY[name]
    parameters = {p.name for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    assert set(cls.options) == parameters
    conf = yaml.safe_load((CONF / "regularizer" / f"{name}.yaml").read_text())
    assert set(conf) - {"name", "defaults"} <= set(cls.options)
    assert cls.option_problems({k: v for k, v in conf.items() if k in cls.options}) == []  # paper values pass
