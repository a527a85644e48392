"""What training writes and analysis reads, said once (torch-free: analysis imports it too).

- The run directory: its file names, how run directories are found (`run_dirs`), how its
  files are read (`read_json`, `read_jsonl`: a torn last line of the appended metrics.jsonl
  is skipped) and the status a run has (`STATUSES`, `run_status`). Training writes these
  files, `analysis` reads them; both take the names from here.
- `identity(config)`: a run's configuration is its resolved config, not how it was typed;
  two records with the same identity and seed are one run, whatever their directory names.
- `METRIC_KINDS`: the metric registry (stylegan2-ada's metric_main is the model). Each kind
  has its name grammar and the columns it writes (whether higher is better, what each
  measures, its worst possible value); the evaluator, the analysis and the claims check all
  look metrics up here, and benchmark.evaluation.COMPUTE holds each kind's compute function
  under the kind's name. Analysis refuses a column no kind claims rather than guess its
  direction (a guessed direction would report a method's worst setting as best). Adding a
  metric: `METRIC_KINDS.add(MetricKind(...))`, `COMPUTE.add(function, name=...)`, a test.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from benchmark.registry import Registry
from benchmark.run_lock import LOCK_NAME, describe, holder

# The run files' schema (result.json, spectra.json, metrics.jsonl rows, checkpoints). 2: every
# metrics.jsonl row says its kind ("train" | "eval"); schema 1 files (no kind) are read alike.
SCHEMA = 2
READABLE_SCHEMAS = (1, 2)

# ---------------------------------------------------------------- the run directory
RESULT_FILE = "result.json"        # the final record (written once the run ends, whatever the end)
METRICS_FILE = "metrics.jsonl"     # one row per logging interval or evaluation, appended
SPECTRA_FILE = "spectra.json"      # singular values of D's effective weights at the end
CHECKPOINT_FILE = "checkpoint.pt"  # what a resumed run starts from
RUN_LOG = "run.log"                # the run's own log: its logging lines, stdout and stderr
HYDRA_CONFIG = ".hydra/config.yaml"  # the composed config, written before training starts
SAMPLES_DIR = "samples"            # G's samples of the fixed latents, one PNG per sampling point


def samples_file(name: str) -> str:
    """Where the samples called `name` go, relative to the run directory."""
    return f"{SAMPLES_DIR}/{name}.png"


FINAL_SAMPLES = samples_file("final")  # the samples at the end of training (the reports show them)
# A run directory is a folder holding any of these (a run that took its lock has nothing else yet).
RUN_MARKERS = (RESULT_FILE, HYDRA_CONFIG, LOCK_NAME)

# Every status a run can have, most finished first (summaries list and rank them in this order).
# Everything else imports these names: a status is spelled nowhere but here.
COMPLETED, DIVERGED, FAILED = "completed", "diverged", "failed"
UNREADABLE, SKIPPED_BUSY = "unreadable", "skipped-busy"
RUNNING, STOPPED, STARTED = "running", "stopped", "started"
STATUSES = {
    COMPLETED: "result.json: trained its whole budget",
    DIVERGED: "result.json: stopped at a non-finite loss (a result: it counts as the method's failure)",
    FAILED: "result.json: crashed or refused (its error and traceback say why)",
    UNREADABLE: "result.json cannot be read; relaunching the sweep runs it again",
    SKIPPED_BUSY: "another process held its lock when the sweep ended: this sweep did not touch it",
    RUNNING: "no result.json; a live process holds its lock",
    STOPPED: "no result.json; it logged progress and nobody holds it (killed, preempted): relaunching resumes it",
    STARTED: "no result.json and no progress logged yet",
}
ENDED = (COMPLETED, DIVERGED, FAILED)  # the statuses result.json records
FINISHED = (COMPLETED, DIVERGED)       # a result: a run with the same budget is not run again
FAILURES = (FAILED, UNREADABLE)        # a sweep with any of these exits non-zero
UNFINISHED = (RUNNING, STOPPED, STARTED)  # no result.json: running, or its job ended early
STATUS_RANK = {status: rank for rank, status in enumerate(STATUSES)}
assert set(ENDED + FINISHED + FAILURES + UNFINISHED) <= set(STATUSES)


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write) -> None:
    """Write a file whole or not at all: through `write(tmp_path)` into a temp file beside `path`,
    then a rename (a run's record, a report's table: never half-written behind a complete name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsFileError(ValueError):
    """A results file that cannot be read (damaged inside, not just torn at the end); names the file."""


class SchemaError(ValueError):
    """A results file of a schema this code does not read: sweeps of two schemas are never mixed."""


def read_json(path: Path) -> dict:
    """A JSON object file of the run directory (result.json, spectra.json), of a readable schema."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ResultsFileError(f"{path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(data, dict):
        raise ResultsFileError(f"{path} holds a JSON {type(data).__name__}, not an object")
    if data.get("schema") not in READABLE_SCHEMAS:
        raise SchemaError(f"{path} has schema {data.get('schema')!r}; this code reads schemas {READABLE_SCHEMAS}. "
                          f"Results of different schemas are never mixed: analyse that sweep separately")
    return data


def jsonl_rows(path: Path) -> tuple[list[dict], bool]:
    """The rows of a JSONL file and whether its last line was torn (cut mid-write: metrics.jsonl is
    appended, not replaced, so a killed run or a full disk can leave half a line). A line that
    cannot be read anywhere else means the file is damaged inside: ResultsFileError."""
    path = Path(path)
    if not path.is_file():
        return [], False
    try:
        lines = path.read_text(errors="replace").split("\n")
    except OSError as err:
        raise ResultsFileError(f"{path} cannot be read ({err.strerror})") from err
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    rows = []
    for n, line in numbered:
        try:
            rows.append(json.loads(line))
        except ValueError as err:
            if n == numbered[-1][0]:
                return rows, True
            raise ResultsFileError(f"{path}, line {n}, cannot be read ({err}); it is damaged inside, "
                                   f"not just cut at its end: move it away") from err
    return rows, False


def read_jsonl(path: Path) -> list[dict]:
    """Every row of a JSONL file (metrics.jsonl), each of a readable schema; a torn last line is
    skipped with a warning naming the file."""
    rows, torn = jsonl_rows(path)
    if torn:
        warnings.warn(f"{path}: its last line is torn (cut mid-write) and was skipped", stacklevel=2)
    for row in rows:
        if row.get("schema") not in READABLE_SCHEMAS:
            raise SchemaError(f"{path} has rows of schema {row.get('schema')!r}; this code reads schemas "
                              f"{READABLE_SCHEMAS}")
    return rows


def run_dirs(root: Path) -> list[Path]:
    """Every run directory at or below `root` (submitit's job folders are none)."""
    root = Path(root)
    found = {p.parent for marker in (RESULT_FILE, LOCK_NAME) for p in root.glob(f"**/{marker}")}
    found |= {p.parent.parent for p in root.glob(f"**/{HYDRA_CONFIG}")}
    return sorted(d for d in found if ".submitit" not in d.relative_to(root).parts)


def last_iteration(run_dir: Path) -> int | None:
    rows = read_jsonl(Path(run_dir) / METRICS_FILE)
    return rows[-1].get("iteration") if rows else None


def run_status(run_dir: Path, sweep_ended: bool = False) -> dict:
    """Where one run stands, from its files and its lock (never touching a running job): `status`
    (one of STATUSES), `iteration`, `planned`, `error` and, where it ended, its `result`.
    `sweep_ended`: the sweep that ran it is over, so a holder of its lock is another process
    (the run was skipped as busy). Raises SchemaError for a record of another schema."""
    run_dir = Path(run_dir)
    result_path = run_dir / RESULT_FILE
    held = holder(run_dir)
    try:
        if result_path.is_file() and held is None:
            result = read_json(result_path)
            return {"run": run_dir, "status": result["status"], "iteration": result.get("iteration"),
                    "planned": result.get("iterations_planned"), "error": result.get("error"), "result": result}
        iteration = last_iteration(run_dir)
    except ResultsFileError as err:
        return {"run": run_dir, "status": UNREADABLE, "iteration": None, "planned": None,
                "error": f"{err}; relaunching the sweep runs it again", "result": None}
    if held is not None:
        return {"run": run_dir, "status": SKIPPED_BUSY if sweep_ended else RUNNING, "iteration": iteration,
                "planned": None, "error": f"held by {describe(held)}", "result": None}
    return {"run": run_dir, "status": STOPPED if iteration else STARTED, "iteration": iteration,
            "planned": None, "error": None, "result": None}

# The speed switches (conf `speed:`, benchmark/speed.py), each with whether it changes results.
# Those that do not are left out of a run's name, its identity and the resume check; TF32 keeps
# about 3 significant digits, so it is part of all three. tests/test_config.py checks that
# conf/config.yaml agrees (its `speed:` block and hydra's override_dirname exclusions).
SPEED_SWITCHES = {"cudnn_benchmark": False, "tf32": True, "channels_last": False, "fused_adam": False,
                  "joint_d_call": False, "compile": False}
SPEED_KEYS_THAT_KEEP_RESULTS = tuple(f"speed.{k}" for k, changes in SPEED_SWITCHES.items() if not changes)

# Config keys that change how, where or how fast a run goes, or when it is measured, but not
# what it trains or what its final numbers mean.
PLACEMENT_KEYS = ("device", "progress", "data_root", "dataset.download", "eval.cache_root",
                  "eval.inception_weights", "eval.classifier", *SPEED_KEYS_THAT_KEEP_RESULTS)
# ... and the keys that only say when things are logged, saved or evaluated, and which metrics.
SCHEDULE_KEYS = ("budget.log_every", "budget.checkpoint_every", "budget.sample_every", "eval.every",
                 "eval.batch_size", "eval.metrics", "eval.smoke_metrics", "diagnostics", "logger")
NOT_IDENTITY = ("seed", *PLACEMENT_KEYS, *SCHEDULE_KEYS)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _matches(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def identity(config: dict) -> dict:
    """The flat config keys that make a configuration (the seed and placement left out)."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in flatten(config).items()
            if not _matches(k, NOT_IDENTITY)}


def config_id(config: dict) -> str:
    """A short digest of `identity(config)`: equal for the same configuration however it was typed."""
    text = json.dumps(identity(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Column:
    """One number a metric writes into metrics.jsonl and result.json."""
    key: str                 # the column's kind, e.g. "is", "prc_recall", "mixture_kl"
    suffix: str              # appended to the metric's name ("" for the metric's own number)
    higher_is_better: bool
    # quality: sample quality and diversity in one number (IS, FID, KID); coverage: how much of
    # the data G covers (recall, mixture modes, KL to uniform over modes); precision: the share of
    # good samples, which a collapsed G maximizes, so it is shown beside a ranking, never as one.
    role: str
    worst: float | None = None   # the worst value possible, where there is one
    description: str = ""


@dataclass(frozen=True)
class MetricKind:
    """A family of metrics: its name grammar (the name carries the protocol: counts, real set,
    feature space) and the columns it writes. Its compute function is registered under the same
    name by the module that defines it (benchmark.evaluation.COMPUTE): this module stays torch-free."""
    name: str
    pattern: re.Pattern      # groups: space (a prefix), n (generated), real (N | train), splits
    form: str
    columns: tuple[Column, ...]
    std_companion: bool = False   # writes `<name>_std` beside its number
    space: str | None = None      # a fixed feature space; None: from the name's prefix (SPACES)


_N = r"\d+k?"
_SPACE = r"(?P<space>fmnist_)?"
SPACES = {None: "inception", "fmnist_": "fmnist", "points_": "points"}
# The metric registry. A metric of your own is one more `METRIC_KINDS.add(MetricKind(...))` (a
# second kind under a name is refused: it would shadow the first) and its compute function
# (docs/extending.md); the built-ins join by the same call.
METRIC_KINDS: Registry[MetricKind] = Registry("metric kind", selected_by="a metric name in eval.metrics")
METRIC_KINDS.add(MetricKind(
    name="is", pattern=re.compile(rf"^{_SPACE}is(?P<n>{_N})_(?P<splits>\d+)splits$"), form="[fmnist_]is<N>_<S>splits",
    columns=(Column(key="is", suffix="", higher_is_better=True, role="quality", worst=1.0,
                    description="Inception score (classifier-space for fmnist_), mean over splits"),),
    std_companion=True))
METRIC_KINDS.add(MetricKind(
    name="fid", pattern=re.compile(rf"^{_SPACE}fid(?P<n>{_N})_(?P<real>{_N}|train)$"), form="[fmnist_]fid<N>_<M|train>",
    columns=(Column(key="fid", suffix="", higher_is_better=False, role="quality", worst=None,
                    description="Frechet distance of features, generated vs real"),)))
METRIC_KINDS.add(MetricKind(
    name="kid", pattern=re.compile(rf"^{_SPACE}kid(?P<n>{_N})_(?P<real>{_N}|train)$"), form="[fmnist_]kid<N>_<M|train>",
    columns=(Column(key="kid", suffix="", higher_is_better=False, role="quality", worst=None,
                    description="kernel distance of features, generated vs real"),),
    std_companion=True))
METRIC_KINDS.add(MetricKind(
    name="prc", pattern=re.compile(rf"^(?P<space>fmnist_|points_)?prc(?P<n>{_N})_(?P<real>{_N}|train)$"),
    form="[fmnist_|points_]prc<N>_<M|train>",
    columns=(Column(key="prc_precision", suffix="_precision", higher_is_better=True, role="precision", worst=0.0,
                    description="improved precision (Kynkaanniemi et al. 2019, k=3): share of generated samples "
                                "inside the real manifold"),
             Column(key="prc_recall", suffix="_recall", higher_is_better=True, role="coverage", worst=0.0,
                    description="improved recall (k=3): share of real samples inside the generated manifold"))))
METRIC_KINDS.add(MetricKind(
    name="mixture", pattern=re.compile(rf"^mixture(?P<n>{_N})$"), form="mixture<N>",
    columns=(Column(key="mixture_modes", suffix="_modes", higher_is_better=True, role="coverage", worst=0.0,
                    description="modes covered by good samples"),
             Column(key="mixture_high_quality", suffix="_high_quality", higher_is_better=True, role="precision",
                    worst=0.0, description="share of samples within 3 std of a mode"),
             Column(key="mixture_kl", suffix="_kl", higher_is_better=False, role="coverage", worst=None,
                    description="KL(good samples per mode || uniform over modes), nats; none when no sample is "
                                "good")),
    space="points"))
# The column a tier is ranked and judged by, in order of preference: IS where the paper uses
# it (Figures 3, 9 and 11 pick runs by it), then FID, then coverage on the 2-D mixtures.
PRIMARY_ORDER = ("is", "fid", "kid", "mixture_kl", "mixture_modes")


def metric_forms() -> str:
    """The metric names this project knows, as forms (for messages)."""
    return ", ".join(k.form for k in METRIC_KINDS.values())


def parse_metric(name: str) -> tuple[MetricKind, dict] | None:
    """The kind of a metric name and its groups (space, n, real, splits), or None."""
    for kind in METRIC_KINDS.values():
        m = kind.pattern.match(name)
        if m:
            groups = m.groupdict()
            groups["space"] = kind.space or SPACES[groups.get("space")]
            return kind, groups
    return None


def metric_kind(column: str) -> Column | None:
    """The kind of a result column (`fid5k_10k`, `prc10k_10k_recall`), or None (companions such
    as `is50k_10splits_std` included)."""
    for kind in METRIC_KINDS.values():
        for col in kind.columns:
            if column.endswith(col.suffix) and kind.pattern.match(column[:len(column) - len(col.suffix)]):
                return col
    return None


def metric_space(column: str) -> str | None:
    """The feature space a result column was measured in ("inception", "fmnist", "points"), or None."""
    for kind in METRIC_KINDS.values():
        for suffix in ("", "_std", *(c.suffix for c in kind.columns if c.suffix)):
            if column.endswith(suffix) and (found := parse_metric(column[:len(column) - len(suffix)])):
                return found[1]["space"]
    return None


def higher_is_better(name: str) -> bool:
    kind = metric_kind(name)
    if kind is None:
        raise KeyError(f"{name!r} is not a metric this project knows; forms: {metric_forms()} (benchmark/contract.py)")
    return kind.higher_is_better


def primary_metric(names) -> str | None:
    """The metric to rank by among `names` (PRIMARY_ORDER; the paper's protocol first within a kind)."""
    names = sorted(names, key=lambda n: (not n.startswith(("is50k", "fid5k")), n))
    for kind in PRIMARY_ORDER:
        for name in names:
            if (k := metric_kind(name)) is not None and k.key == kind:
                return name
    return None
