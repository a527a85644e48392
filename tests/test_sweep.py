import json
import os
import shutil
import signal

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob

import regularizers
from analysis.collect import collect
from analysis.compare import Comparison
from analysis.sweep_status import run_status, summary
from benchmark.config import CONF, ConfigError, compose_config, validate
from benchmark.contract import read_jsonl
from benchmark.trainer import Trainer
from tests.helpers import TINY_IMAGES, run_cli

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def swept_values(key: str, values) -> list[str]:
    """The values Hydra's basic sweeper runs for one `hydra.sweeper.params` entry (lists, globs included)."""
    override = OverridesParser.create().parse_override(f"{key}={values}")
    if isinstance(override.value(), Glob):  # glob(...) over a config group: its files
        return override.value().filter(sorted(p.stem for p in (CONF / key).glob("*.yaml")))
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_value_on_every_axis_of_every_preset_composes_and_validates(experiment):
    """Each value of each swept key (globs expanded as Hydra expands them), the other keys at their
    first value, composed and checked as a run would be (benchmark.config.validate: no data read)."""
    cfg = compose_config([f"+experiment={experiment}"], return_hydra_config=True)
    params = {key: swept_values(key, values) for key, values in cfg.hydra.sweeper.params.items()}
    assert cfg.hydra.sweep.dir == f"multirun/{experiment}"
    assert all(params.values()), params
    first = {key: values[0] for key, values in params.items()}
    for key, values in params.items():
        for value in values:
            point = {**first, key: value}
            run = compose_config([f"+experiment={experiment}", *(f"{k}={v}" for k, v in point.items())])
            try:
                validate(run)
            except ConfigError as err:
                pytest.fail(f"+experiment={experiment} {point}: {err}")


def test_presets_over_every_method_pick_up_new_ones_and_leave_out_the_bare_combination():
    values = swept_values("regularizer", compose_config(["+experiment=reference_2d"], return_hydra_config=True)
                          .hydra.sweeper.params.regularizer)
    assert sorted(values) == sorted(regularizers.REGISTRY)
    parts = compose_config(["+experiment=combos"], return_hydra_config=True).hydra.sweeper.params["regularizer.parts"]
    runs = [compose_config(["+experiment=combos", f"regularizer.parts={v}"]) for v in swept_values("regularizer.parts", parts)]
    assert [(c.regularizer.name, c.loss.name) for c in runs] == [("fn+wgangp", "wgan"), ("sn+wgangp", "wgan"),
                                                                 ("sn+gangp", "ns")]


def grid_args(tmp_path, image_root, *extra):
    return ("-m", "regularizer=none,sn", "setting=A,B", "budget=smoke", "eval=none", *TINY_IMAGES,
            f"data_root={image_root}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "local", "parallel"])
def test_tiny_grid_runs_through_hydra_multirun(launcher, image_root, tmp_path, monkeypatch):
    extra = [] if launcher == "basic" else [f"hydra/launcher={launcher}"]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the thread count is the launcher's to set
    proc = run_cli(*grid_args(tmp_path, image_root, *extra), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 4
    for name in runs:
        result = json.loads((tmp_path / "sweep" / name / "result.json").read_text())
        assert result["status"] == "completed" and (tmp_path / "sweep" / name / "checkpoint.pt").exists()
    assert "4 runs: 4 completed" in proc.stdout
    if launcher == "local":
        assert list((tmp_path / "sweep" / ".submitit").iterdir())  # real submitit jobs
    if launcher == "parallel":  # a worker per core, one torch thread each: no oversubscription
        threads = {json.loads((tmp_path / "sweep" / n / "result.json").read_text())["environment"]["torch_threads"]
                   for n in runs}
        assert threads == {1}


@pytest.mark.slow
def test_relaunch_skips_finished_runs_and_resumes_an_interrupted_one(image_root, tmp_path):
    args = grid_args(tmp_path, image_root, "budget.iterations=4", "budget.checkpoint_every=2")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    sweep = tmp_path / "sweep"
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    interrupted = runs[0]
    finished_weights = torch.load(interrupted / "checkpoint.pt", weights_only=True)["G"]
    # make runs[0] look killed at iteration 2: its state of then, no result.json
    cfg = compose_config([*TINY_IMAGES, f"data_root={image_root}", "eval=none", "budget=smoke",
                          *interrupted.name.split(",")])
    partial = tmp_path / "partial"
    Trainer(cfg, partial).fit()
    for name in ("checkpoint.pt", "metrics.jsonl"):
        shutil.copy(partial / name, interrupted / name)
    (interrupted / "result.json").unlink()
    stamps = {r: (r / "result.json").stat().st_mtime_ns for r in runs[1:]}

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("(already finished)") == 3
    assert {r: (r / "result.json").stat().st_mtime_ns for r in runs[1:]} == stamps  # untouched
    resumed = json.loads((interrupted / "result.json").read_text())
    assert resumed["status"] == "completed" and resumed["iteration"] == 4
    weights = torch.load(interrupted / "checkpoint.pt", weights_only=True)["G"]
    assert all(torch.equal(weights[k], finished_weights[k]) for k in weights)

    # the same configurations typed another way (a default spelled out): recognised, not run again
    typed = run_cli(*args, "seed=0", cwd=tmp_path)
    assert typed.returncode == 0, typed.stderr[-2000:]
    assert typed.stdout.count("the same configuration already finished in") == 4
    comparison = Comparison(*collect([sweep]))
    assert len(comparison.runs) == 4  # counted once, not as 2 seeds


@pytest.mark.slow
def test_a_diverging_run_is_recorded_while_the_others_complete(image_root, tmp_path):
    proc = run_cli("-m", "regularizer=none", "setting.lr=0.0001,1e38", "budget=smoke", "eval=none", *TINY_IMAGES,
                   f"data_root={image_root}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                   "dataset.name=fashion_mnist,cifar10", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the sweep goes on, and its status says runs failed
    statuses = {}
    for run in (p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith(".")):
        keys = dict(part.split("=", 1) for part in run.name.split(","))
        statuses[keys["dataset.name"], float(keys["setting.lr"])] = run_status(run)["status"]
    assert statuses == {
        ("fashion_mnist", 1e-4): "completed",
        ("fashion_mnist", 1e38): "diverged",
        ("cifar10", 1e-4): "failed",  # no CIFAR-10 here: bad input, recorded, the sweep goes on
        ("cifar10", 1e38): "failed",
    }
    text = summary(tmp_path / "sweep")
    assert "4 runs: 1 completed, 1 diverged, 2 failed" in text and "CIFAR10 not found" in text
    assert "2 run(s) did not finish" in text
    assert text in proc.stdout  # printed by the callback when the sweep ended


class Requeued(BaseException):
    """What submitit's handler does after requeueing: it ends the process."""


def test_preemption_signal_checkpoints_and_the_resumed_run_matches(tiny_config, tmp_path, monkeypatch):
    overrides = ("regularizer=sn", "setting=D", "budget.iterations=4", "budget.log_every=1",
                 "budget.checkpoint_every=4")
    straight = Trainer(tiny_config(*overrides), tmp_path / "straight")
    straight.fit()

    handed_over = []

    def submitit_like(signum, frame):
        handed_over.append(signum)
        raise Requeued

    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        run_dir = tmp_path / "preempted"
        trainer = Trainer(tiny_config(*overrides), run_dir)
        original = trainer.train_one_update

        def signalled_during_update():
            if trainer.iteration == 2:
                os.kill(os.getpid(), signal.SIGUSR2)  # arrives mid-update: the update still completes
            original()

        monkeypatch.setattr(trainer, "train_one_update", signalled_during_update)
        with pytest.raises(Requeued):
            trainer.fit()
        assert handed_over == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) is submitit_like  # handlers restored
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["iteration"] == 3  # not a regular checkpoint step
    assert not (run_dir / "result.json").exists()

    resumed = Trainer(tiny_config(*overrides), run_dir)
    assert resumed.fit()["iteration"] == 4
    assert all(torch.equal(v, straight.D.state_dict()[k]) for k, v in resumed.D.state_dict().items())
    assert [r["iteration"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3, 4]


def test_slurm_launcher_config_makes_the_sbatch_script_it_promises(tmp_path, monkeypatch):
    import submitit
    # submitit's SLURM executor wants srun on PATH; nothing is submitted, so a stand-in does
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cfg = compose_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu-h100", "hydra.launcher.account=gan-lab",
                          "hydra.launcher.timeout_min=600", "hydra.launcher.array_parallelism=16",
                          f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    params = dict(cfg.hydra.launcher)
    assert params["_target_"].endswith("SlurmLauncher") and params["max_num_timeout"] > 0
    # the same mapping hydra-submitit-launcher's launch() makes, then the script submitit would submit
    executor = submitit.AutoExecutor(folder=str(tmp_path / ".submitit"), cluster="slurm",
                                     slurm_max_num_timeout=params["max_num_timeout"])
    base = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name",
            "stderr_to_stdout"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()
                                  if k not in ("_target_", "submitit_folder", "max_num_timeout")
                                  and not (isinstance(v, str) and "${" in v)})
    executor._executor.parameters["map_count"] = 40  # what map_array sets for a 40-run sweep
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit", "uid")
    for line in ("#SBATCH --partition=gpu-h100", "#SBATCH --account=gan-lab", "#SBATCH --time=600",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --array=0-39%16", "#SBATCH --signal=USR2@120"):
        assert line in script, script


@pytest.mark.slow
def test_combos_preset_sweeps_through_the_cli_with_runs_named_by_their_parts(tmp_path):
    proc = run_cli("-m", "+experiment=combos", "dataset=ring8", "budget=smoke", "setting=C", "progress=false",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, loss in (("fn+wgangp", "wgan"), ("sn+wgangp", "wgan"), ("sn+gangp", "ns")):
        run_dir = tmp_path / "sweep" / f"budget=smoke,dataset=ring8,regularizer={name},seed=0,setting=C"
        result = json.loads((run_dir / "result.json").read_text())
        assert result["status"] == "completed", result.get("error")
        assert result["config"]["regularizer"]["name"] == name and result["config"]["loss"]["name"] == loss
    assert "3 runs: 3 completed" in proc.stdout


def test_sweep_status_names_an_unfinished_run_and_its_log(tmp_path):
    # what a cancelled or killed job leaves: a run directory with progress but no result.json
    run = tmp_path / "sweep" / "regularizer=sn"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("{}\n")
    (run / "metrics.jsonl").write_text(json.dumps({"schema": 1, "iteration": 40}) + "\n")
    (run / "run.log").write_text("")
    text = summary(tmp_path / "sweep")
    assert "1 runs: 1 stopped" in text  # no process holds it
    assert "not finished: regularizer=sn: at update 40" in text and f"logs: {run / 'run.log'}" in text
