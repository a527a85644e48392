"""The SLURM path (hydra/launcher=slurm) on a real cluster: real sbatch job arrays, sacct states,
time-limit requeues and scancel. They run when a cluster is up (`make slurm-up` starts a single-node
one here; CI does) and are skipped, saying so, otherwise.

SLURM's clock is coarse: its time limits are whole minutes, and it checks them (and sends the
USR2 that submitit asks for `signal_delay_s` before the limit) about every 30 s. So the runs that must
outlast a time slot, or still be running when cancelled, are sized in seconds of this machine's
measured speed rather than in a fixed number of updates.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch

from benchmark.config import compose_config
from benchmark.contract import read_jsonl
from benchmark.trainer import Trainer
from tests.helpers import ROOT, RUN

PARTITION = "debug"  # the partition scripts/slurm-local.sh makes
SLURM_DIR = Path(os.environ.get("REGBENCH_SLURM_DIR", "/tmp/regbench-slurm"))


def slurm_env() -> dict:
    """The environment of SLURM commands: the local cluster's slurm.conf where no other is named."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    local_conf = SLURM_DIR / "etc" / "slurm.conf"
    if "SLURM_CONF" not in env and not Path("/etc/slurm/slurm.conf").exists() and local_conf.exists():
        env["SLURM_CONF"] = str(local_conf)
    # the jobs import the project from this tree, as the launching process does
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def slurm(*args: str) -> str:
    return subprocess.run(list(args), env=slurm_env(), capture_output=True, text=True, timeout=60, check=True).stdout


def cluster_missing() -> str | None:
    """Why the cluster tests cannot run here, or None when they can."""
    if not shutil.which("sbatch"):
        return "no SLURM here (start a single-node cluster with `make slurm-up`, as root)"
    try:
        states = slurm("sinfo", "-h", "-p", PARTITION, "-o", "%T").split()
        slurm("sacct", "-n", "-X", "-S", "now")  # submitit reads job states with sacct: accounting must answer
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        detail = getattr(err, "stderr", None) or str(err)
        return f"the SLURM cluster does not answer ({detail.strip()[:200]}); `make slurm-up` starts one"
    if not any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"partition {PARTITION!r} has no usable node (states: {states or 'none'}); `make slurm-up` starts one"
    return None


MISSING = cluster_missing()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]

# one CPU and one torch thread per job: the jobs share this machine with the tests
LAUNCHER = ("hydra/launcher=slurm", f"hydra.launcher.partition={PARTITION}", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
            "hydra.launcher.setup=['export OMP_NUM_THREADS=1']")
RING8 = ("dataset=ring8", "eval=none", "progress=false")


def sweep(sweep_dir: Path, *overrides: str, background: bool = False):
    """`python benchmark/run.py -m ... hydra/launcher=slurm` as a user runs it (the same as `make sweep`)."""
    cmd = [sys.executable, str(RUN), "-m", *RING8, *LAUNCHER, f"hydra.sweep.dir={sweep_dir}", *overrides]
    if background:
        return subprocess.Popen(cmd, cwd=sweep_dir.parent, env=slurm_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=sweep_dir.parent, env=slurm_env(), capture_output=True, text=True, timeout=600)


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted((sweep_dir / ".submitit").glob("*/*_log.out")))


def sized_run(tmp_path: Path, seconds: float, **budget) -> tuple[str, ...]:
    """Overrides for a ring8 run that takes about `seconds` of one core here (measured now, in this process)."""
    base = ("regularizer=none", "setting=B", "budget=short")
    probe = 60
    trainer = Trainer(compose_config([*RING8, *base, f"budget.iterations={probe}"]), tmp_path / "probe")
    # on one thread, as the job runs: two threads beside other work (a sweep) measure several times slower
    # than the job then runs, and a run sized that way ends within its first time slot
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(10):  # warm-up: the first updates are slower, and would size the run too short
            trainer.train_one_update()
        start = time.perf_counter()
        for _ in range(probe):
            trainer.train_one_update()
    finally:
        torch.set_num_threads(threads)
    iterations = int(max(200, round(probe / (time.perf_counter() - start) * seconds, -2)))  # logging divides it
    budget = {"iterations": iterations, "log_every": iterations // 20, "checkpoint_every": iterations,
              "sample_every": iterations, **{k: v(iterations) if callable(v) else v for k, v in budget.items()}}
    return (*base, *(f"budget.{k}={v}" for k, v in budget.items()))


def test_a_small_sweep_completes_through_slurm_and_a_relaunch_skips_it(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = sweep(sweep_dir, "regularizer=none,sn", "budget=smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = run_dirs(sweep_dir)
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "result.json").read_text())["status"] == "completed"
    assert "2 runs: 2 completed" in proc.stdout  # the end-of-sweep summary
    script = next((sweep_dir / ".submitit").glob("*/*_submission.sh")).read_text()
    assert f"#SBATCH --partition={PARTITION}" in script and "#SBATCH --array=0-1%" in script  # one real job array

    # Hydra rewrites its own .hydra/ and run.log at each launch; the run's records stay untouched
    def records():
        return {p: p.stat().st_mtime_ns for run in runs for p in run.rglob("*")
                if p.is_file() and ".hydra" not in p.parts and p.name != "run.log"}
    before = records()
    again = sweep(sweep_dir, "regularizer=none,sn", "budget=smoke")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 runs: 2 completed" in again.stdout
    assert records() == before
    assert job_logs(sweep_dir).count("(already finished)") == 2


def test_a_run_longer_than_its_time_limit_is_requeued_and_ends_as_if_run_in_one_go(tmp_path):
    # SLURM checks time limits every 30 s and sends the USR2 at the first check within signal_delay_s + 30 s
    # of the limit: with 5 s, 25-55 s into each 1-minute slot, one check before the one that ends the job.
    # After the job's start-up, ~90 s of updates need two slots or more.
    overrides = sized_run(tmp_path, 90)
    sweep_dir = tmp_path / "sweep"
    proc = sweep(sweep_dir, *overrides, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5",
                 background=True)
    threads = torch.get_num_threads()
    try:
        # meanwhile, the same run here, on one thread as the job (another thread count sums in another order)
        torch.set_num_threads(1)
        straight = Trainer(compose_config([*RING8, *overrides]), tmp_path / "straight")
        straight.fit()
        stdout, stderr = proc.communicate(timeout=540)
    finally:
        torch.set_num_threads(threads)
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    (run,) = run_dirs(sweep_dir)
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["iteration"] == straight.iteration, result
    logs = job_logs(sweep_dir)
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs, (
        f"the run ended within its first time slot (this machine ran faster than measured?):\n{logs[-3000:]}")
    final = torch.load(run / "checkpoint.pt", weights_only=True)
    for name, model in (("G", straight.G), ("D", straight.D)):
        assert all(torch.equal(final[name][k], v) for k, v in model.state_dict().items()), name


def test_a_cancelled_job_ends_the_sweep_and_a_relaunch_resumes_it(tmp_path):
    # ~30 s of updates with a checkpoint every tenth: cancelled right after the first, so that the job is
    # still running when scancel arrives even on a machine faster than measured (a cancel after a checkpoint
    # at half way once met a job that had already completed), and resumed from the last one it wrote
    overrides = sized_run(tmp_path, 30, checkpoint_every=lambda n: n // 10, log_every=lambda n: n // 20)
    sweep_dir = tmp_path / "sweep"
    proc = sweep(sweep_dir, *overrides, background=True)
    try:
        deadline = time.monotonic() + 300
        while not list(sweep_dir.glob("*/checkpoint.pt")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None and list(sweep_dir.glob("*/checkpoint.pt")), "no checkpoint while the job ran"
        (job_dir,) = [p for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]  # a one-run sweep: one job
        slurm("scancel", job_dir.name)
        _, stderr = proc.communicate(timeout=180)  # the launcher learns the job's end from sacct: no hang
    finally:
        proc.kill()
    (run,) = run_dirs(sweep_dir)
    assert not (run / "result.json").exists(), "the job completed before scancel: size the run longer"
    assert proc.returncode != 0 and "CANCELLED" in stderr, stderr[-3000:]
    kept = read_jsonl(run / "metrics.jsonl")
    checkpointed = torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]

    status = subprocess.run([sys.executable, "-m", "analysis.sweep_status", str(sweep_dir)], cwd=ROOT,
                            env=slurm_env(), capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert f"not finished: {run.name}" in status.stdout and str(run / "run.log") in status.stdout, status.stdout

    again = sweep(sweep_dir, *overrides)
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads((run / "result.json").read_text())
    iterations = int(next(o for o in overrides if o.startswith("budget.iterations=")).split("=")[1])
    assert result["status"] == "completed" and result["iteration"] == iterations
    # resumed, not restarted: the rows up to the checkpoint are those of the first job, timings included
    resumed = read_jsonl(run / "metrics.jsonl")
    assert [r for r in resumed if r["iteration"] <= checkpointed] == [r for r in kept if r["iteration"] <= checkpointed]


def test_array_parallelism_one_runs_one_job_at_a_time(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = sweep(sweep_dir, "regularizer=none,wc", "budget=smoke", "hydra.launcher.array_parallelism=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (array_dir,) = [p for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
    for _ in range(60):  # the launcher returns on the results; SLURM records the ends a moment later
        rows = slurm("sacct", "-n", "-X", "-P", "-j", array_dir.name, "-o", "JobID,State,Start,End").split()
        if len(rows) == 2 and all(row.split("|")[1] == "COMPLETED" for row in rows):
            break
        time.sleep(1)
    spans = sorted((datetime.fromisoformat(start), datetime.fromisoformat(end))
                   for _, state, start, end in (row.split("|") for row in rows) if state == "COMPLETED")
    assert len(spans) == 2, rows
    assert spans[0][1] <= spans[1][0], f"two runs of the array ran at once: {rows}"
