"""The GPU switches of a run (conf `speed:`). They change how fast a run goes, never what it
computes beyond float tolerance: `tests/test_speed.py` trains a few updates with each one on and
off and compares the losses. TF32 is the exception (about 3 significant digits), so it is off
unless asked for; PyTorch itself turns it on for convolutions.

    cudnn_benchmark  cuDNN times the conv algorithms once per input shape and keeps the fastest
    tf32             TF32 tensor cores for float32 convolutions and matmuls
    channels_last    NHWC memory layout for the conv models (what tensor-core kernels read)
    fused_adam       Adam as one fused kernel over all parameters
    joint_d_call     real and fake batches through D in one call (not where D couples a batch: BN)
    compile          torch.compile of the step functions: false | default | reduce-overhead
                     (CUDA graphs on top) | max-autotune; a gradient penalty stays eager,
                     since torch.compile does not support double backward

Under reduce-overhead each compiled step function is a CUDA graph whose outputs live in memory
the next replay reuses (a compiled call with no backward pending starts a new iteration, and
frees the last one's outputs): a value a step keeps past its next compiled call is copied out
(`keeper`). On a CPU no graph is captured, so tests there check the tracing, not the replay
(docs/cost.md).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch._dynamo

CUDA_GRAPHS = "reduce-overhead"

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")

# torch.compile caches per code object, so every Trainer of a process (the timing bench builds
# one per regularizer, tests build many) recompiles the same step functions. The default limit
# of 8 would silently send later trainers back to eager mode.
_RECOMPILE_LIMIT = 64


def set_backends(speed) -> None:
    """Process-wide switches: they hold for every model of the process."""
    torch.backends.cudnn.benchmark = bool(speed.cudnn_benchmark)
    torch.backends.cudnn.allow_tf32 = bool(speed.tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(speed.tf32)


def compiler(speed) -> Callable[[Callable], Callable]:
    """A function that compiles a step function the configured way (or returns it as it is).
    fullgraph: a step function that cannot become one graph is an error, not a slow mix of
    compiled pieces and Python (and CUDA graphs need the whole step in one graph)."""
    if speed.compile is False:
        return lambda fn: fn
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)
    return lambda fn: torch.compile(fn, mode=speed.compile, fullgraph=True)


def keeper(speed) -> Callable[[torch.Tensor], torch.Tensor]:
    """How a step keeps a value (a loss for the log) past the next compiled call: detached, and
    copied out of the CUDA graph's memory under reduce-overhead."""
    if speed.compile == CUDA_GRAPHS:
        return lambda value: value.detach().clone()
    return torch.Tensor.detach
