"""Live views of a run while it trains (conf/logger/): TensorBoard by default, Weights & Biases
offline, or none. The files stay the record; a view only shows them as they are written.

The trainer calls a logger at the places it writes, so the view cannot drift from the files:

    Trainer.record(row)      metrics.jsonl, then log_row(row)       every row, of every kind
    Trainer.write_samples()  samples/*.png, then log_image(...)     the same picture, at its iteration
    Trainer.fit()            open_logger() after resuming, close() in its finally

Names are the row's own keys, nested dicts flattened with "/" (d_loss, penalty, sigma_max/<layer>,
metrics/<name>, eval_seconds, lipschitz/...), so a key a later row carries is logged with no edit
here; rows of every kind go through the same code. The step is the row's iteration.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import struct
from pathlib import Path

from omegaconf import OmegaConf

from benchmark.contract import identity

# Keys that place a row rather than measure anything: its step and its kind are not curves.
BOOKKEEPING = ("schema", "iteration", "kind")
# The package each backend needs, and how to install it (none: nothing).
PACKAGES = {"tensorboard": ("tensorboard", "pip install -e ."), "wandb": ("wandb", "pip install -e '.[wandb]'"),
            "none": None}
TENSORBOARD_DIR = "tb"   # <run_dir>/tb/: the run's event files, one per process that trained it
# PNG colour type -> TensorBoard's image colorspace (grey, grey+alpha, RGB, RGBA; palettes decode to RGB)
_PNG_COLORSPACE = {0: 1, 4: 2, 2: 3, 3: 3, 6: 4}


def flatten_row(row: dict, prefix: str = "") -> dict:
    """A row's loggable values by name: nested dicts and lists flattened with "/", numbers as
    floats, None (a non-finite value in metrics.jsonl) as NaN, text kept as text."""
    out = {}
    items = enumerate(row) if isinstance(row, (list, tuple)) else row.items()
    for key, value in items:
        if not prefix and key in BOOKKEEPING:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list, tuple)):
            out.update(flatten_row(value, name + "/"))
        elif value is None:
            out[name] = math.nan
        elif isinstance(value, (bool, int, float)):
            out[name] = float(value)
        elif isinstance(value, str):
            out[name] = value
    return out


def hyperparameters(cfg) -> dict:
    """The run's configuration as flat scalars: its identity (benchmark.contract) and its seed."""
    config = OmegaConf.to_container(cfg, resolve=True)
    flat = {**identity(config), "seed": config["seed"]}
    return {k: (str(list(v)) if isinstance(v, tuple) else v) for k, v in sorted(flat.items()) if v is not None}


def problem(cfg) -> str | None:
    """Why the configured logger cannot run here, or None (benchmark.config.validate asks)."""
    name = OmegaConf.select(cfg, "logger.name", default="none")
    if name not in PACKAGES:
        return f"logger.name={name!r}: valid: {', '.join(PACKAGES)}"
    if PACKAGES[name] and importlib.util.find_spec(PACKAGES[name][0]) is None:
        package, install = PACKAGES[name]
        return f"logger={name}: the {package} package is not installed here ({install}), or choose logger=none"
    return None


class RunLogger:
    """No live view (logger=none); the interface every backend has."""

    def log_row(self, row: dict) -> None:
        pass

    def log_image(self, tag: str, image, step: int) -> None:
        """`image`: a PNG file's path, or a CHW tensor with values in [0, 1]."""

    def close(self) -> None:
        pass


class _OncePerStep:
    """Each name's steps strictly increase: a train and an eval row of one iteration both carry
    `seconds`, and the final sample grid may fall on a sample step; a repeated step would draw
    a zigzag in TensorBoard and be dropped by wandb, so the first value of a step stands."""

    def __init__(self):
        self.last_step: dict[str, int] = {}

    def first(self, name: str, step: int) -> bool:
        if self.last_step.get(name, -1) >= step:
            return False
        self.last_step[name] = step
        return True


class TensorBoardLogger(RunLogger):
    def __init__(self, options, run_dir: Path, hparams: dict, start: int):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        # A resumed run restarts after its checkpoint's iteration `start`: TensorBoard drops the
        # stopped process's events past it (purge_step), as truncate_jsonl drops its rows. The writer's
        # own thread writes the file; flush_secs bounds how stale the view is, without a flush per row.
        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=start + 1,
                                    flush_secs=options.flush_secs)
        self.steps = _OncePerStep()
        # The HParams plugin's session start, in this run (add_hparams would start a sub-run). No
        # Experiment summary: without one the plugin takes the union of every run's hyperparameters and
        # each scalar's last value as the metrics, so a sweep's table shows all of its keys and the
        # final losses and metrics; with one, the plugin would use the first run's keys for all.
        _, session_start, _ = hparams_summary(hparams, {})
        self.writer.file_writer.add_summary(session_start)

    def log_row(self, row: dict) -> None:
        step = row["iteration"]
        for name, value in flatten_row(row).items():
            if not self.steps.first(name, step):
                continue
            if isinstance(value, str):
                self.writer.add_text(name, value, step)
            else:
                self.writer.add_scalar(name, value, step)

    def log_image(self, tag: str, image, step: int) -> None:
        if not self.steps.first(tag, step):
            return
        if not isinstance(image, (str, Path)):
            self.writer.add_image(tag, image, step)
            return
        from tensorboard.compat.proto.summary_pb2 import Summary
        png = Path(image).read_bytes()  # logged as written: no decoding and re-encoding in the loop
        width, height = struct.unpack(">II", png[16:24])
        picture = Summary.Image(height=height, width=width, colorspace=_PNG_COLORSPACE.get(png[25], 4),
                                encoded_image_string=png)
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=picture)]), step)

    def close(self) -> None:
        self.writer.close()


class WandbLogger(RunLogger):
    """Weights & Biases, offline by default (no account, no network): `wandb sync <run_dir>/wandb/offline-run-*`
    uploads it later. The run's id comes from its directory, so a resumed run continues the same W&B run."""

    def __init__(self, options, run_dir: Path, hparams: dict, start: int):
        import wandb

        run_id = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
        self.run = wandb.init(project=options.project, mode=options.mode, dir=str(run_dir), id=run_id,
                              name=run_dir.name, resume="allow", config=hparams,
                              settings=wandb.Settings(console="off", silent=True))
        self.steps = _OncePerStep()

    def log_row(self, row: dict) -> None:
        step = row["iteration"]
        values = {name: value for name, value in flatten_row(row).items() if self.steps.first(name, step)}
        self.run.log(values, step=step)

    def log_image(self, tag: str, image, step: int) -> None:
        import wandb
        if self.steps.first(tag, step):
            self.run.log({tag: wandb.Image(str(image) if isinstance(image, (str, Path)) else image)}, step=step)

    def close(self) -> None:
        self.run.finish()


BACKENDS = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger, "none": RunLogger}


def open_logger(cfg, run_dir: str | Path, start: int = 0) -> RunLogger:
    """The configured view of the run in `run_dir`, continuing after iteration `start` (a resumed run's)."""
    options = OmegaConf.select(cfg, "logger")
    name = options.name if options is not None else "none"
    if name == "none":
        return RunLogger()
    return BACKENDS[name](options, Path(run_dir), hyperparameters(cfg), start)
