"""Entry point: `python benchmark/run.py regularizer=sn setting=B [group=option ...]`.

Thin on purpose: Hydra composes conf/, `execute` does the rest, in an order that
costs a bad command line nothing: validate every key (no data read yet), look at
what the run directory already holds (a finished run is never rewritten by
another config or a smaller budget), check that it can be written, lock it (a
second process on it is refused), and only then write .hydra/ and train.

Exit status: 0 completed or diverged (a result); 2 bad input or the directory in
use by another process, with one message naming what is wrong and nothing in the
run directory changed; 1 a crash during training (result.json says `failed`,
with the traceback). In a sweep (-m) a bad or crashed run is recorded as failed
and the others go on; a busy one is skipped (`skipped-busy`) without touching the
directory its owner writes. A run whose result.json says it finished with the
same budget is not run again; an unreadable result.json is named and re-run.
"""
from __future__ import annotations

import io
import json
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from benchmark.checkpoint import CheckpointError, fingerprint  # noqa: E402
from benchmark.config import ConfigError, validate  # noqa: E402
from benchmark.contract import (  # noqa: E402
    FAILED,
    FINISHED,
    HYDRA_CONFIG,
    RESULT_FILE,
    RUN_LOG,
    SKIPPED_BUSY,
    ResultsFileError,
    SchemaError,
    config_id,
    read_json,
)
from benchmark.data import DatasetError  # noqa: E402
from benchmark.evaluation import EvaluationSetupError  # noqa: E402
from benchmark.results import SCHEMA, write_atomic, write_json  # noqa: E402
from benchmark.run_lock import (  # noqa: E402
    RunDirBusyError,
    RunDirUnwritableError,
    check_writable,
    describe,
    holder,
    locked,
)

BAD_INPUT = (ConfigError, DatasetError, CheckpointError, EvaluationSetupError, ResultsFileError, RunDirUnwritableError,
             RunDirBusyError)
EXIT_CRASH, EXIT_BAD_INPUT = 1, 2


def read_result(path: Path) -> dict | None:
    """result.json (the contract's reader), or None when there is none or it cannot be read (a torn
    copy, a full disk): such a run is named on stderr and run again, which rewrites the record.
    One of another schema is refused (ConfigError): this code would rewrite it in its own."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except SchemaError as err:
        raise ConfigError(f"{err}; to run this configuration here, move the directory away or rerun elsewhere") from err
    except ResultsFileError as err:
        print(f"warning: {err}: the run is done again and the record rewritten", file=sys.stderr)
        return None


def finished_result(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The run's result.json if it already finished this budget; None if there is something to train.
    Refuses (ConfigError / CheckpointError) a finished run that this config would rewrite."""
    path = run_dir / RESULT_FILE
    result = read_result(path)
    if result is None:
        return None
    if result.get("status") not in FINISHED:
        return None
    if fingerprint(OmegaConf.create(result.get("config") or {})) != fingerprint(cfg):
        raise CheckpointError(f"{path} was written by a different config (the config files changed since?); "
                              f"it was left in place: move it away to run this configuration here")
    planned = result.get("iterations_planned")
    if planned == cfg.budget.iterations:
        return result
    if isinstance(planned, int) and cfg.budget.iterations < planned:
        raise ConfigError(f"budget.iterations={cfg.budget.iterations}: {path} holds a run that finished "
                          f"({result['status']}) with budget.iterations={planned}, and a smaller budget would "
                          f"overwrite it; relaunch with budget.iterations={planned} (or more, to extend it)")
    return None  # a longer budget extends the run from its checkpoint


def _index_entry(cfg: DictConfig, run_dir: Path) -> Path:
    """Where a finished run is recorded by its configuration, beside its siblings: the same
    configuration typed another way (a default spelled out, groups in another order) gets
    another directory name from Hydra, but the same entry here."""
    key = f"{config_id(OmegaConf.to_container(cfg, resolve=True))}-seed{cfg.seed}-{cfg.budget.iterations}"
    return run_dir.parent / ".finished" / f"{key}.json"


def finished_elsewhere(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The result of this configuration, seed and budget if a sibling directory finished it."""
    entry = _index_entry(cfg, run_dir)
    if not entry.is_file():
        return None
    other = run_dir.parent / json.loads(entry.read_text())["run"]  # written whole (write_json)
    result = read_result(other / RESULT_FILE) if other != run_dir else None  # None: gone or unreadable
    return {**result, "same_as": str(other)} if result and result.get("status") in FINISHED else None


class _Tee(io.TextIOBase):
    """A text stream that writes to the terminal's stream and to the run's log."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.stream.write(text)
        if "\r" not in text:  # a progress bar's redraw: the terminal's only
            self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:  # progress bars ask
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")


@contextmanager
def output_logged(run_dir: Path):
    """The run's stdout and stderr (prints, warnings, a crash's traceback) also go into its own
    run.log, beside Hydra's log lines: what sweep-status points at when a run fails. A launcher's
    per-job logs (submitit) hold the same, but far from the run and only under that launcher."""
    with open(Path(run_dir) / RUN_LOG, "a", buffering=1, errors="replace") as log:
        out, err, show = sys.stdout, sys.stderr, warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            # into the log even where warnings are caught and recorded (a test, a notebook)
            log.write(warnings.formatwarning(message, category, filename, lineno, line))
            show(message, category, filename, lineno, file or err, line)

        sys.stdout, sys.stderr, warnings.showwarning = _Tee(out, log), _Tee(err, log), showwarning
        try:
            yield
        except BaseException as error:
            if not isinstance(error, KeyboardInterrupt | SystemExit):
                log.write(traceback.format_exc())
            raise
        finally:
            sys.stdout, sys.stderr, warnings.showwarning = out, err, show


def train(cfg: DictConfig, run_dir: str | Path, before_training=None) -> dict:
    """Validate, look at what `run_dir` holds, read every input, lock the directory and resume,
    then train (or report it finished). `before_training()` runs once the directory is this
    process's and every input has been read (run.py writes .hydra/ there): a refused run leaves
    the directory as it was."""
    run_dir = Path(run_dir)
    validate(cfg)  # before anything is read or written
    # read-only: a finished run (here, or the same configuration in a sibling directory) is reported
    done = finished_result(cfg, run_dir) or finished_elsewhere(cfg, run_dir)
    if done is not None:
        return {**done, "skipped": True}
    check_writable(run_dir)
    held = holder(run_dir)
    if held is not None:  # busy: say so now, not after loading the data (locked() decides)
        raise RunDirBusyError(f"run directory {run_dir} is in use by {describe(held)}; wait for it "
                              f"to end or stop it (a crashed or killed run releases it by itself)")
    from benchmark.trainer import Trainer
    trainer = Trainer(cfg, run_dir)  # data, models, evaluator: reads only
    with locked(run_dir):
        done = finished_result(cfg, run_dir)  # finished by the process that held it a moment ago?
        if done is not None:
            return {**done, "skipped": True}
        trainer.resume()  # an unusable checkpoint is refused here, before anything is written
        if before_training is not None:
            before_training()
        with output_logged(run_dir):
            result = trainer.fit()
        if result["status"] in FINISHED:
            write_json(_index_entry(cfg, run_dir), {"run": run_dir.name})
        return result


def save_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """.hydra/{config,hydra,overrides}.yaml, as Hydra writes them (conf/config.yaml sets
    hydra.output_subdir=null: Hydra would write them before the config is checked and the
    directory locked, rewriting a finished or running run's record)."""
    hydra_cfg = HydraConfig.get()
    hydra_dir = (run_dir / HYDRA_CONFIG).parent
    files = {Path(HYDRA_CONFIG).name: cfg, "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
             "overrides.yaml": OmegaConf.create(list(hydra_cfg.overrides.task))}
    for name, node in files.items():
        text = OmegaConf.to_yaml(node)
        write_atomic(hydra_dir / name, lambda tmp, text=text: Path(tmp).write_text(text))


def record_failure(cfg: DictConfig, run_dir: Path, err: Exception, bad_input: bool) -> None:
    """A sweep's record of a run that failed before its trainer could write one: result.json
    `failed`, written only while holding the directory and only where no record exists."""
    try:
        with locked(run_dir):
            if (run_dir / RESULT_FILE).exists():  # never overwrite a record (the trainer writes its own)
                return
            write_json(run_dir / RESULT_FILE, {
                "schema": SCHEMA, "status": FAILED, "iteration": 0, "error": f"{type(err).__name__}: {err}",
                "traceback": None if bad_input else traceback.format_exc(),
                "config": _plain(cfg)})
    except (RunDirBusyError, RunDirUnwritableError):
        pass  # another process's directory, or none we can write: stderr has said it


def _plain(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # a config too broken to resolve is recorded as written
        return OmegaConf.to_container(cfg, resolve=False)


def execute(cfg: DictConfig, run_dir: Path, in_sweep: bool, before_training=None) -> tuple[int, dict]:
    """Run one config; its exit status and what happened (status, message). Bad input prints one
    message naming what is wrong; a crash in a single run is raised (its traceback is the message)."""
    try:
        result = train(cfg, run_dir, before_training)
    except RunDirBusyError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT, {"status": SKIPPED_BUSY, "error": str(err)}
    except Exception as err:
        bad_input = isinstance(err, BAD_INPUT)
        if not in_sweep:
            if bad_input:
                print(f"error: {err}", file=sys.stderr)
                return EXIT_BAD_INPUT, {"status": FAILED, "error": str(err)}
            raise
        # In a sweep the failure is a result and the other runs go on.
        print(f"error: the run in {run_dir} failed: {type(err).__name__}: {err}", file=sys.stderr)
        record_failure(cfg, run_dir, err, bad_input)
        return (EXIT_BAD_INPUT if bad_input else EXIT_CRASH), {"status": FAILED, "error": str(err)}
    state = "already finished" if result.get("skipped") else "done"
    if result.get("same_as"):
        state = f"the same configuration already finished in {result['same_as']}"
    print(f"{result['status']} ({state}): {result['iteration']}/{result.get('iterations_planned')} generator "
          f"updates, run directory {run_dir}")
    return 0, result


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    code, outcome = execute(cfg, run_dir, in_sweep, before_training=lambda: save_hydra_files(cfg, run_dir))
    if code and not in_sweep:
        sys.exit(code)
    return outcome


if __name__ == "__main__":
    main()
