"""`make tensorboard [SWEEP=...]`: TensorBoard over a sweep (default: outputs/ and multirun/), each run
named by what it is, as the comparison labels it (analysis.compare), not by its directory:

    <method>/<setting>[/<context>]/seed=<N>      e.g.  sn/B/seed=0,  wc (c=0.02)/D/seed=1

TensorBoard names a run by its path under --logdir and follows symbolic links (checked with
TensorBoard 2.21, with its fast loader and without), so the view is a tree of links to each run's
tb/ folder in .tensorboard/. (--logdir_spec also renames runs, but turns the fast loader and some
plugins off: TensorBoard's own help prefers a link tree.) While TensorBoard runs, the tree is
rebuilt every --refresh seconds, so that runs a sweep starts later appear too.

    python -m analysis.tensorboard multirun/local_grid [--port 6007]   # other options go to tensorboard
    python -m analysis.tensorboard --list multirun/local_grid          # the names only
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from analysis.collect import collect
from analysis.compare import Comparison
from benchmark.run_logger import TENSORBOARD_DIR

DEFAULT_PATHS = ("outputs", "multirun")
VIEW = Path(".tensorboard")


def _component(text: str) -> str:
    """One level of a run's name: a path component (no separator, not hidden, not empty)."""
    return text.replace(os.sep, "_").lstrip(".") or "_"


def run_names(paths) -> dict[str, Path]:
    """Readable unique name -> the run's events folder, for every run under `paths` that has one."""
    runs, _ = collect(paths)
    runs = runs[[(Path(d) / TENSORBOARD_DIR).is_dir() for d in runs.run_dir]].reset_index(drop=True)
    if runs.empty:
        return {}
    # Comparison keeps one record per (configuration, seed): a copy elsewhere is named after it.
    labelled = Comparison(runs).runs
    label = {(row.config_id, row.seed): [row.method, row.setting_label] + ([] if row.context == "all runs"
                                                                              else [row.context])
             for row in labelled.itertuples(index=False)}
    names: dict[str, Path] = {}
    for row in runs.sort_values("run_dir").itertuples(index=False):
        parts = [*label[(row.config_id, row.seed)], f"seed={row.seed}"]
        name = "/".join(map(_component, parts))
        if name in names:  # the same configuration and seed run twice: told apart by directory
            name += _component(f" [{Path(row.run_dir).name}]")
        names[name] = Path(row.run_dir).resolve() / TENSORBOARD_DIR
    return names


def build_view(names: dict[str, Path], view: Path = VIEW) -> None:
    """Make `view` a tree of links, one per name, to its events folder; links no name wants are removed."""
    view.mkdir(parents=True, exist_ok=True)
    for link in sorted(view.rglob("*"), reverse=True):  # children before their folders
        name = link.relative_to(view).as_posix()
        if link.is_symlink():
            if name not in names or Path(os.readlink(link)) != names[name]:
                link.unlink()
        elif link.is_dir() and not any(link.iterdir()):
            link.rmdir()
    for name, target in names.items():
        link = view / name
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target, target_is_directory=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="sweep or run directories (default: outputs/ and multirun/)")
    parser.add_argument("--view", type=Path, default=VIEW, help="where the tree of named links is built")
    parser.add_argument("--refresh", type=float, default=30, help="seconds between rebuilds of the tree")
    parser.add_argument("--list", action="store_true", help="print the names and their folders, start nothing")
    args, tensorboard_args = parser.parse_known_args(argv)
    paths = args.paths or [p for p in DEFAULT_PATHS if Path(p).is_dir()]
    if not paths:
        print("no runs yet: outputs/ and multirun/ do not exist (make run / make sweep first)", file=sys.stderr)
        return 2
    try:
        names = run_names(paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list:
        for name, target in names.items():
            print(f"{name}\t{target}")
        return 0
    build_view(names, args.view)
    print(f"{len(names)} runs in {args.view}/ (rebuilt every {args.refresh:g} s)", file=sys.stderr)
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(args.view),
                               *tensorboard_args])
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # a kill ends TensorBoard too
    try:
        while server.poll() is None:
            time.sleep(args.refresh)
            try:
                build_view(run_names(paths), args.view)
            except Exception as err:  # e.g. a run directory being created right now: the next round sees it
                print(f"note: the run tree was not rebuilt this time ({type(err).__name__}: {err})", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
    return server.wait()


if __name__ == "__main__":
    sys.exit(main())
