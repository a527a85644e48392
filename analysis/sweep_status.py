"""Where a sweep stands: one line per run, read from its files only (never touching a running job).

    python -m analysis.sweep_status [SWEEP_DIR]     (default: the newest folder under multirun/)

Run directories and their statuses are benchmark/contract.py's (`run_dirs`,
`run_status`, `STATUSES`), which analysis.collect uses too. A run's status is result.json's (completed | diverged | failed); `unreadable` when that
file cannot be read (named; relaunching the sweep runs it again); else `running`
(a live process holds its lock: benchmark/run_lock.py) or `stopped` (it logged
progress, nobody holds it: killed or preempted; relaunching resumes it) or
`started`. At the end of every `-m` sweep Hydra calls SweepSummary, which prints
the same counts (a run another process still holds counts as `skipped-busy`:
this sweep did not touch it) and where each failed run's log is, and ends the
sweep with exit status 1 when any run failed or is unreadable.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from hydra.experimental.callback import Callback

from benchmark.contract import (
    FAILED,
    FAILURES,
    HYDRA_CONFIG,
    RESULT_FILE,
    RUN_LOG,
    SKIPPED_BUSY,
    STATUSES,
    UNFINISHED,
    SchemaError,
    run_dirs,
    run_status,
)


def logs_of(run_dir: Path) -> list[Path]:
    """Where to read about a failed or unfinished run: its result.json (error, traceback) and its
    run.log (its log lines, stdout, stderr, warnings and traceback: benchmark/run.py output_logged;
    submitit's per-job stdout/stderr are named in the summary)."""
    return [p for p in (run_dir / RESULT_FILE, run_dir / RUN_LOG) if p.is_file()]


def summary(sweep_dir: Path, sweep_ended: bool = False) -> str:
    statuses = [run_status(d, sweep_ended) for d in run_dirs(sweep_dir)]
    counts = Counter(s["status"] for s in statuses)
    lines = [f"sweep {sweep_dir}: {len(statuses)} runs: " +
             ", ".join(f"{counts[k]} {k}" for k in STATUSES if counts[k])]
    for s in statuses:
        if s["status"] in (*FAILURES, SKIPPED_BUSY):
            lines.append(f"  {s['status']}: {s['run'].relative_to(sweep_dir)}: {s['error']}")
        if s["status"] == FAILED:
            lines.append(f"    logs: {', '.join(str(p) for p in logs_of(s['run']))}")
        elif s["status"] in UNFINISHED:  # still running, or its job ended early (cancelled, killed): relaunch
            lines.append(f"  not finished: {s['run'].relative_to(sweep_dir)}: at update {s['iteration'] or 0}")
            lines.append(f"    logs: {', '.join(str(p) for p in logs_of(s['run']))}")
    submitit = sweep_dir / ".submitit"
    if (counts[FAILED] or any(counts[k] for k in UNFINISHED)) and submitit.is_dir():
        lines.append(f"  submitit's job logs (stdout/stderr per job): {submitit}/<job id>/")
    if any(counts[k] for k in FAILURES):
        lines.append(f"  {sum(counts[k] for k in FAILURES)} run(s) did not finish: fix the cause and relaunch the "
                     f"same command (finished runs are skipped, failed ones run again)")
    return "\n".join(lines)


def failures(sweep_dir: Path) -> int:
    return sum(run_status(d)["status"] in FAILURES for d in run_dirs(sweep_dir))


def table(sweep_dir: Path) -> str:
    rows = [run_status(d) for d in run_dirs(sweep_dir)]
    width = max((len(str(r["run"].relative_to(sweep_dir))) for r in rows), default=3)
    out = [f"{'run':<{width}}  {'status':<9}  progress"]
    for r in rows:
        progress = f"{r['iteration'] or 0}/{r['planned']}" if r["planned"] else f"{r['iteration'] or 0}"
        out.append(f"{str(r['run'].relative_to(sweep_dir)):<{width}}  {r['status']:<9}  {progress}")
    return "\n".join(out)


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks): prints the summary when a sweep ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            print(summary(sweep_dir, sweep_ended=True), flush=True)
        except SchemaError as err:
            print(f"error: {err}", file=sys.stderr)
            return
        if failures(sweep_dir):  # `make sweep` (and any script around it) sees that runs are missing
            sys.stdout.flush()
            raise SystemExit(1)


def newest_sweep(root: Path = Path("multirun")) -> Path:
    candidates = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    if not candidates:
        raise FileNotFoundError(f"no sweep found under {root}/: run `make sweep` first, or name a sweep directory")
    return max(candidates, key=lambda p: p.stat().st_mtime)


DEFAULT_REFERENCE = Path("results/reference_2d")  # what `make figures` and the notebooks show before any sweep ran


def default_sweep() -> Path:
    """The newest sweep under multirun/; where none has run yet, the shipped 2-D reference."""
    try:
        return newest_sweep()
    except FileNotFoundError:
        if DEFAULT_REFERENCE.is_dir():
            return DEFAULT_REFERENCE
        raise


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m analysis.sweep_status", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", nargs="?", type=Path)
    args = p.parse_args(argv)
    try:
        sweep_dir = args.sweep_dir or newest_sweep()
        if not sweep_dir.is_dir():
            raise FileNotFoundError(f"{sweep_dir} is not a directory (expected a sweep directory such as "
                                    f"multirun/local_grid)")
        if not run_dirs(sweep_dir):
            raise FileNotFoundError(f"{sweep_dir} holds no run directories (folders with {HYDRA_CONFIG} or {RESULT_FILE})")
        print(table(sweep_dir))
        print(summary(sweep_dir))
    except (OSError, SchemaError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
