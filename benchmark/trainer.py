"""The one trainer every regularizer shares (SN paper, Algorithm 1 around it):

    for each generator update:
        n_dis times: d_step()   D loss + regularizer.penalty (+ score_penalty), Adam step, regularizer.after_step
        once:        g_step()
        every log_every:        one metrics.jsonl row (losses, spectral norms), divergence check
        every eval.every:       an evaluation row (metrics, Lipschitz diagnostics)
        every sample_every:     a sample grid
        every checkpoint_every: an atomic checkpoint (a killed run resumes from it)

Each row and grid also goes to the live view (conf/logger/: TensorBoard by default) as it is written.

Between logging points the loop reads no GPU value: per-step losses stay on the
device until a row is written. The one wait there is inside a method's own linear
algebra: singular value clipping's SVD, every k D updates (torch's CUDA SVD checks
its convergence on the host; regularizers/singular_value_clipping.py).
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

import regularizers
from benchmark import checkpoint, losses, run_logger
from benchmark.config import ConfigError, validate
from benchmark.contract import (
    CHECKPOINT_FILE,
    COMPLETED,
    DIVERGED,
    FAILED,
    FINAL_SAMPLES,
    METRICS_FILE,
    RESULT_FILE,
    SPECTRA_FILE,
    samples_file,
)
from benchmark.data import BatchStream, load_dataset
from benchmark.evaluation import Evaluator
from benchmark.lipschitz import LipschitzDiagnostics
from benchmark.models import build_models
from benchmark.results import (
    SCHEMA,
    append_jsonl,
    environment,
    singular_values,
    spectral_norms,
    truncate_jsonl,
    write_json,
)
from benchmark.samples import save_samples
from benchmark.speed import compiler, keeper, set_backends

LOSS_COLUMNS = ("d_loss", "g_loss", "penalty")
# SLURM (through submitit) sends USR2 before a time limit and TERM on preemption.
PREEMPTION_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


class Trainer:
    def __init__(self, cfg, run_dir: str | Path, data: torch.Tensor | None = None):
        """`data` replaces the configured dataset (the timing bench trains on random images)."""
        self.device = validate(cfg)  # bad input fails here, before anything is loaded or written
        self.cfg = cfg
        set_backends(cfg.speed)
        self.run_dir = Path(run_dir)
        self.total = cfg.budget.iterations
        s = cfg.setting
        torch.manual_seed(cfg.seed)  # model init, SN's u, orthonormal init

        if data is None:
            data = load_dataset(cfg.dataset, cfg.data_root)
        if cfg.batch_size > len(data):  # a stand-in smaller than the dataset's known size (the check's)
            raise ConfigError(f"batch_size={cfg.batch_size}: exceeds the {len(data)} samples of the data "
                              f"in {cfg.data_root}")
        self.batches = BatchStream(data, cfg.batch_size, cfg.seed, self.device)
        G, D = build_models(cfg.model, self.batches.shape, cfg.z_dim)
        options = {k: v for k, v in OmegaConf.to_container(cfg.regularizer, resolve=True).items() if k != "name"}
        self.regularizer = regularizers.build(cfg.regularizer.name, **options)
        self.G = G.to(self.device)
        # attach first, then move: a method may add layers (BN / LN baselines), which must move with D
        self.D = self.regularizer.attach(D).to(self.device)
        if cfg.speed.channels_last:  # converts 4-D weights only; 2-D data and MLPs are untouched
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.loss = cfg.loss.name
        fused = True if cfg.speed.fused_adam else None  # None: PyTorch's default (for-each on GPU)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=s.lr, betas=(s.beta1, s.beta2), fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=s.lr, betas=(s.beta1, s.beta2), fused=fused)
        self.joint_d_call = cfg.speed.joint_d_call and not (self.regularizer.couples_batch
                                                             or self.regularizer.counts_d_calls)
        # The step functions, compiled when speed.compile asks for it.
        compile_ = compiler(cfg.speed)
        self.keep = keeper(cfg.speed)  # the losses each step returns, safe from CUDA graphs' next replay
        # the functions that call D stay eager where D's forward takes an input gradient (GN)
        compile_d = compile_ if self.regularizer.compile_d_forward else (lambda fn: fn)
        self.generate = compile_(self.G)
        self.d_loss = compile_d(self._d_loss)
        self.g_loss = compile_d(self._g_loss)
        self.pairs_real = losses.LOSSES[self.loss].paired  # a relativistic G loss scores a real batch too
        reg = self.regularizer
        self.penalty = compile_(reg.penalty) if reg.compile_penalty else reg.penalty
        self.after_step = compile_(reg.after_step) if reg.compile_after_step else reg.after_step
        # Built before training so that a bad metric name or missing weights stop the run now; after
        # the models, and with the RNG state restored, so that evaluation never changes what is trained.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            self.evaluator = (Evaluator(cfg.eval, cfg.dataset, self.batches.data, self.device, cfg.data_root,
                                        cfg.progress) if cfg.eval.metrics else None)
        # At the evaluations, so only with an evaluator; its inputs come from a private generator.
        self.lipschitz = (LipschitzDiagnostics(cfg.diagnostics, self.batches.data, cfg.z_dim, cfg.eval.seed,
                                               cfg.eval.batch_size)
                          if self.evaluator and cfg.diagnostics.lipschitz else None)

        # Latents (and the penalty's interpolation weights) come from their own
        # generator so that data order and noise are the same for every method.
        self.noise = torch.Generator(self.device).manual_seed(cfg.seed + 1)
        self.regularizer.generator = self.noise
        # The same latents for every method and every sample picture (an 8x8 grid, or a 2-D cloud).
        n_fixed = 64 if len(self.batches.shape) == 3 else 2000
        self.fixed_z = torch.randn(n_fixed, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(self.device)

        self.iteration = 0
        self.train_seconds = 0.0
        self.pending: list[torch.Tensor] = []  # per-update (d_loss, g_loss, penalty), still on the device
        self.last_row: dict | None = None
        self.last_eval: dict | None = None  # {"iteration", "metrics"} of the latest successful evaluation
        self.last_lipschitz: dict | None = None  # the latest evaluation's diagnostics, with its "iteration"
        self.preempted_by: int | None = None  # a signal asking the run to stop, kept until the update ends
        self.resumed = False
        self.logger = run_logger.RunLogger()  # fit() opens the configured one, once it knows where the run resumes

    @property
    def evaluator_identity(self) -> dict:
        """The weights the metrics come from, as records name them ({} when the run measures nothing)."""
        return self.evaluator.identity if self.evaluator else {}

    # ------------------------------------------------------------ steps
    def sample_z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.z_dim, device=self.device, generator=self.noise)

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """D's loss, and D's outputs (logits) on the real and the generated batch."""
        if self.joint_d_call:  # one pass over twice the batch: half the kernel launches
            scores_real, scores_fake = self.D(torch.cat([real, fake])).split([len(real), len(fake)])
        else:
            scores_real, scores_fake = self.D(real), self.D(fake)
        return losses.d_loss(self.loss, scores_real, scores_fake), scores_real, scores_fake

    def _g_loss(self, z: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        scores_real = None
        if real is not None:  # a paired loss: D's outputs on a real batch, constants for G
            with torch.no_grad():
                scores_real = self.D(real)
        return losses.g_loss(self.loss, self.D(self.G(z)), scores_real)

    def d_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        real = self.batches.next()
        with torch.no_grad():
            fake = self.generate(self.sample_z(real.shape[0]))
        # cached(): each reparametrized weight is computed once for all D calls of the step
        with parametrize.cached():
            loss, scores_real, scores_fake = self.d_loss(real, fake)
            penalty = self.penalty(self.D, real, fake)
            if self.regularizer.reads_scores:  # a term from D's outputs on this step's batches (LeCam)
                penalty = penalty + self.regularizer.score_penalty(scores_real, scores_fake)
            self.opt_d.zero_grad(set_to_none=True)
            (loss + penalty).backward()
        loss, penalty = self.keep(loss), self.keep(penalty)  # before after_step, a compiled call
        self.opt_d.step()
        self.after_step(self.D)
        return loss, penalty

    def g_step(self) -> torch.Tensor:
        self.D.requires_grad_(False)  # no gradients for D's weights in G's update
        multiplier = self.cfg.setting.g_batch_multiplier
        # a paired loss scores each generated sample against a real one: a real batch of G's size
        real = torch.cat([self.batches.next() for _ in range(multiplier)]) if self.pairs_real else None
        with parametrize.cached():
            z = self.sample_z(self.cfg.batch_size * multiplier)
            loss = self.g_loss(z) if real is None else self.g_loss(z, real)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)
        return self.keep(loss)

    def set_learning_rate(self) -> None:
        """setting.lr_decay=linear: both learning rates fall linearly from lr to 0 over the budget,
        as in Gulrajani et al.'s and the SN authors' ResNet code. Derived from the iteration, so a
        resumed run needs no scheduler state."""
        if self.cfg.setting.lr_decay == "linear":
            lr = self.cfg.setting.lr * (1.0 - self.iteration / self.total)
            for group in (*self.opt_d.param_groups, *self.opt_g.param_groups):
                group["lr"] = lr

    def train_one_update(self) -> None:
        self.set_learning_rate()
        for _ in range(self.cfg.setting.n_dis):
            d_loss, penalty = self.d_step()
        g_loss = self.g_step()
        # the last D step's values stand for the update, as in chainer-gan-lib's reports
        self.pending.append(torch.stack([d_loss, g_loss, penalty]))

    # ------------------------------------------------------------ run directory
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def save_checkpoint(self) -> None:
        checkpoint.save(self.checkpoint_path(), {
            "fingerprint": checkpoint.fingerprint(self.cfg),
            "iteration": self.iteration,
            "train_seconds": self.train_seconds,
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "regularizer": self.regularizer.state_dict(),
            "batches": self.batches.state_dict(),
            "noise": self.noise.get_state(),
            "pending": torch.stack(self.pending).cpu() if self.pending else torch.zeros(0, 3),
            "last_row": self.last_row,
            "last_eval": self.last_eval,
            "evaluator": self.evaluator_identity,
            "last_lipschitz": self.last_lipschitz,
            "lipschitz_start_vectors": self.lipschitz.state_dict() if self.lipschitz else {},
        })

    def resume(self) -> None:
        """Continue from checkpoint.pt if there is one; either way metrics.jsonl keeps only the rows up
        to where training restarts (rows of an attempt killed after its checkpoint, a torn last line)."""
        path = self.checkpoint_path()
        if path.exists():
            self._load_checkpoint(path)
        truncate_jsonl(self.run_dir / METRICS_FILE, self.iteration)
        self.resumed = True

    def _load_checkpoint(self, path: Path) -> None:
        state = checkpoint.load(path, self.cfg)
        self._check_evaluator(path, state)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.regularizer.load_state_dict(state["regularizer"])
        self.batches.load_state_dict(state["batches"])
        self.noise.set_state(state["noise"])
        self.pending = [row.to(self.device) for row in state["pending"]]
        self.iteration = int(state["iteration"])
        self.train_seconds = float(state["train_seconds"])
        self.last_row = state["last_row"]
        self.last_eval = state["last_eval"]
        # both absent from checkpoints older than the diagnostics
        self.last_lipschitz = state.get("last_lipschitz")
        if self.lipschitz:
            self.lipschitz.load_state_dict(state.get("lipschitz_start_vectors", {}))

    def _check_evaluator(self, path: Path, state: dict) -> None:
        """A run whose metrics so far came from one evaluator goes on with the same weights: its
        curve and its final numbers must be in one feature space (older checkpoints say nothing)."""
        recorded, now = state.get("evaluator"), self.evaluator_identity
        if state.get("last_eval") is None or recorded is None:
            return
        differing = sorted(k for k in recorded if k in now and recorded[k] != now[k])
        if differing:
            detail = ", ".join(f"{k}: {recorded[k]} in the checkpoint, {now[k]} now" for k in differing)
            raise checkpoint.CheckpointError(
                f"checkpoint {path} was evaluated with other weights ({detail}); point eval.classifier "
                f"(or eval.inception_weights) at the file with that sha256, or move the run away to start it "
                f"afresh: metrics of two evaluators are never mixed in one run")

    def log(self, start: float) -> int | None:
        """Close the timing of the update begun at `start`, write one metrics row, and
        return the first diverged iteration, if any."""
        values = torch.stack(self.pending).cpu()  # the loop's one host sync per interval
        self.train_seconds += time.perf_counter() - start  # after the sync: the GPU's work is done
        first = self.iteration - len(values) + 1
        bad_rows = (~torch.isfinite(values)).any(dim=1).nonzero()
        diverged_at = first + int(bad_rows[0]) if len(bad_rows) else None
        weights_finite = torch.stack([torch.isfinite(p).all() for p in self.D.parameters()]).all()
        if diverged_at is None and not weights_finite:
            diverged_at = self.iteration
        means = values.mean(dim=0).tolist()
        self.last_row = {
            "schema": SCHEMA, "kind": "train", "iteration": self.iteration, "seconds": self.train_seconds,
            **{name: _finite_or_none(v) for name, v in zip(LOSS_COLUMNS, means, strict=True)},
            "sigma_max": {k: _finite_or_none(v) for k, v in spectral_norms(self.D).items()},
        }
        self.record(self.last_row)
        self.pending = []
        return diverged_at

    def evaluate(self) -> None:
        """One evaluation row in metrics.jsonl: the metrics and, apart from them (they are not
        quality metrics, and the analysis ranks by `metrics`), the Lipschitz diagnostics with
        their own `seconds`. A failing evaluation is recorded there with its error and training
        goes on (the checkpoint is not at stake)."""
        start = time.perf_counter()
        row = {"schema": SCHEMA, "kind": "eval", "iteration": self.iteration, "seconds": self.train_seconds}
        try:
            row["metrics"] = self.evaluator.evaluate(self.G, self.cfg.z_dim)
            row["evaluator"] = self.evaluator.identity
            self.last_eval = {"iteration": self.iteration, "metrics": row["metrics"]}
        except Exception as err:
            row["eval_error"] = f"{type(err).__name__}: {err}"
        row["eval_seconds"] = time.perf_counter() - start
        if self.lipschitz is not None:
            try:
                row["lipschitz"] = self.lipschitz.measure(self.G, self.D)
                self.last_lipschitz = {"iteration": self.iteration, **row["lipschitz"]}
            except Exception as err:
                row["lipschitz_error"] = f"{type(err).__name__}: {err}"
        self.record(row)

    def record(self, row: dict) -> None:
        """Every metrics.jsonl row goes through here: to the file, then to the live view under its own names."""
        append_jsonl(self.run_dir / METRICS_FILE, row)
        self.logger.log_row(row)

    def write_samples(self, file: str) -> None:
        """G's samples of the fixed latents into `file`, relative to the run directory."""
        self.G.eval()  # BN running statistics, as at evaluation
        with torch.no_grad():
            fake = self.G(self.fixed_z)
        self.G.train()
        # 2-D points are drawn over real ones (read directly: the batch stream's state stays untouched)
        reference = self.batches.data[:2000].cpu() if fake.dim() == 2 else None
        path = self.run_dir / file
        save_samples(path, fake.cpu(), reference)
        self.logger.log_image("samples", path, self.iteration)

    def write_result(self, status: str, **extra) -> dict:
        sv = singular_values(self.D)
        write_json(self.run_dir / SPECTRA_FILE, {
            "schema": SCHEMA, "iteration": self.iteration,
            "singular_values": {k: v.tolist() for k, v in sv.items()},
        })
        last = self.last_row or {}
        result = {
            "schema": SCHEMA,
            "status": status,
            "iteration": self.iteration,
            "iterations_planned": self.total,
            **extra,
            "seed": self.cfg.seed,
            "final": {name: last.get(name) for name in LOSS_COLUMNS},
            "metrics": self.last_eval["metrics"] if self.last_eval else {},
            "metrics_iteration": self.last_eval["iteration"] if self.last_eval else None,
            "evaluator": self.evaluator_identity,
            "train_seconds": self.train_seconds,
            "seconds_per_generator_update": self.train_seconds / self.iteration if self.iteration else None,
            "spectral_norms": {k: float(v[0]) if len(v) else None for k, v in sv.items()},
            "lipschitz": self.last_lipschitz,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "environment": environment(self.device),
        }
        write_json(self.run_dir / RESULT_FILE, result)
        return result

    # ------------------------------------------------------------ preemption
    def _on_preemption(self, signum, frame) -> None:
        # Only a flag: saving here could catch the models halfway through a D step.
        self.preempted_by = signum

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}  # Python allows handlers in the main thread only
        return {sig: signal.signal(sig, self._on_preemption) for sig in PREEMPTION_SIGNALS}

    def _stop_for_preemption(self, previous: dict) -> None:
        """Checkpoint, then hand the signal to whoever handled it before (submitit's handler
        requeues the job and exits; without one, the process ends as the signal would end it)."""
        signum, self.preempted_by = self.preempted_by, None
        self.save_checkpoint()
        print(f"received {signal.Signals(signum).name}: checkpoint of iteration {self.iteration} saved in "
              f"{self.checkpoint_path()}; the same command resumes from it", file=sys.stderr, flush=True)
        handler = previous.get(signum, signal.SIG_DFL)
        if callable(handler):
            handler(signum, None)  # may return (submitit ignores TERM): training then goes on
        elif handler == signal.SIG_DFL:
            raise SystemExit(128 + signum)

    # ------------------------------------------------------------ the loop
    def fit(self) -> dict:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.resumed:  # run.py resumes first, to refuse a bad checkpoint before it writes anything
            self.resume()
        b = self.cfg.budget
        name = f"{self.cfg.regularizer.name}/{self.cfg.setting.name}"
        bar = tqdm(total=self.total, initial=self.iteration, desc=name, unit="G-update",
                   disable=not self.cfg.progress, dynamic_ncols=True)
        previous_handlers = self._install_signal_handlers()
        try:
            self.logger = run_logger.open_logger(self.cfg, self.run_dir, start=self.iteration)
            while self.iteration < self.total:
                start = time.perf_counter()
                self.train_one_update()
                self.iteration += 1
                if self.iteration % b.log_every == 0 or self.iteration == self.total:
                    diverged_at = self.log(start)
                    if diverged_at is not None:
                        return self.write_result(DIVERGED, diverged_at=diverged_at)
                    bar.set_postfix(d=f"{self.last_row['d_loss']:.3f}", g=f"{self.last_row['g_loss']:.3f}")
                else:
                    self.train_seconds += time.perf_counter() - start
                bar.update(1)
                if self.evaluator and (self.iteration % self.cfg.eval.every == 0 or self.iteration == self.total):
                    self.evaluate()
                if self.iteration % b.sample_every == 0:
                    self.write_samples(samples_file(f"iter_{self.iteration:07d}"))
                if self.iteration % b.checkpoint_every == 0 or self.iteration == self.total:
                    self.save_checkpoint()
                if self.preempted_by is not None:
                    self._stop_for_preemption(previous_handlers)
            self.write_samples(FINAL_SAMPLES)
            return self.write_result(COMPLETED)
        except Exception as err:
            self.write_result(FAILED, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
            raise
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            bar.close()
            self.logger.close()


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
