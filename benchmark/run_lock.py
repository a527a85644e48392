"""One writer per run directory: an exclusive flock(2) on `<run dir>/.lock`.

Two processes on one directory (the same command twice, a sweep relaunched while
its SLURM jobs still run) would both train and interleave their metrics rows. The
second one is refused with the holder's pid, host and start time, which the holder
writes into the lock file.

Never stale: the lock belongs to the open file, and the kernel drops it when the
holder exits for any reason (crash, kill -9, node reboot), so a lock file left
behind by a dead process is simply taken by the next run; its text is only a note
of the last holder. Only a live process (or a child it forked, which shares the
open file) holds it. On NFS, Linux emulates flock with NFS byte-range locks, which
hold across machines when the NFS lock service runs; on a file system without
locking the run goes on with a warning. Torch-free: `analysis.sweep_status` asks
the same question (`holder`) without taking the lock.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

LOCK_NAME = ".lock"
# A status probe (sweep_status) holds a shared lock for microseconds: retry that long before refusing.
ACQUIRE_TRIES, ACQUIRE_PAUSE_S = 5, 0.05


class RunDirBusyError(RuntimeError):
    """Another live process holds the run directory."""


class RunDirUnwritableError(RuntimeError):
    """The run directory (or a file the run appends to) cannot be written."""


def describe(holder: dict | None) -> str:
    if not holder:
        return "another process (it left no note)"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
            f"({' '.join(holder.get('command') or [])})")


def _note(fd: int) -> dict | None:
    try:
        return json.loads(os.pread(fd, 65536, 0).decode() or "null")
    except (OSError, ValueError):
        return None


def holder(run_dir: Path) -> dict | None:
    """The note of the live process holding `run_dir`, or None when nobody holds it. Takes a shared
    lock for an instant (a run starting at that moment retries), never writes."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _note(fd) or {}
        except OSError:
            return None  # no locking on this file system: nobody can be said to hold it
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_writable(run_dir: Path) -> None:
    """Refuse now, not at the first checkpoint, a run directory that cannot be written: the folder
    itself and the one file the run appends to (the others are replaced whole)."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirUnwritableError(f"run directory {run_dir} cannot be created ({err.strerror}); "
                                    f"choose another (hydra.run.dir=... / hydra.sweep.dir=...)") from err
    from benchmark.contract import METRICS_FILE  # here: the contract imports this module

    for path in (run_dir, run_dir / METRICS_FILE):
        if path.exists() and not os.access(path, os.W_OK):
            raise RunDirUnwritableError(f"{path} cannot be written (permissions); fix them or choose another "
                                        f"run directory (hydra.run.dir=...)")


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for this process; RunDirBusyError names the holder when another has it."""
    run_dir = Path(run_dir)
    check_writable(run_dir)
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise RunDirUnwritableError(f"run directory {run_dir} cannot be written ({err.strerror}); "
                                    f"choose another (hydra.run.dir=...)") from err
    try:
        _acquire(fd, run_dir)
        previous = os.pread(fd, 65536, 0)
        note = {"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _rewrite(fd, json.dumps(note).encode())
        try:
            yield
        except BaseException:
            _rewrite(fd, previous)  # a refused or failed run leaves the note as it found it
            raise
    finally:
        os.close(fd)  # releases the lock (as the kernel does if this process dies first)


def _rewrite(fd: int, content: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, content, 0)


def _acquire(fd: int, run_dir: Path) -> None:
    for attempt in range(ACQUIRE_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt + 1 < ACQUIRE_TRIES:
                time.sleep(ACQUIRE_PAUSE_S)
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            print(f"warning: {run_dir} cannot be locked on this file system ({err.strerror}): nothing stops a "
                  f"second process from writing this run directory at the same time", file=sys.stderr)
            return
    raise RunDirBusyError(
        f"run directory {run_dir} is in use by {describe(_note(fd))}. Two writers would interleave one run's "
        f"files: wait for it to end or stop it. The lock ends with its holder (a crashed or killed run "
        f"releases it), so this is a live process")
