"""How Lipschitz D really is: measured diagnostics for every method (docs/lipschitz.md).

Every regularizer of the benchmark exists to control D's Lipschitz constant L, yet the
reshaped-matrix sigma of each layer (`sigma_max`, the SN paper's out x in*kh*kw matrix) is
not a conv layer's operator norm: stride, padding and the sliding window change it, and it
neither equals nor bounds it. Measured here, at every evaluation:

    operator_norm   per Conv2d / Linear, the largest singular value of the linear map the
                    layer applies at its input shape (bias left out), by subspace iteration
                    on A^T A (the adjoint through autograd, so any stride or padding works)
    layer_product   the product of those norms (and of BN's per-channel scales): an upper
                    bound on L when D is a chain of these layers and 1-Lipschitz activations
                    (`layer_product_is_bound`); residual sums and layer norm break it
    grad_max/mean   ||grad_x D(x)|| over a fixed set of real, generated and interpolated
                    samples: each is a lower bound on L
    ascent_max      the largest |D(x) - D(y)| / ||x - y|| found by gradient ascent on pairs
                    started at the samples of largest gradient: a tighter lower bound (the
                    norm of the gradient itself cannot be ascended: it is piecewise constant
                    for the piecewise-linear Ds here, so its gradient is zero)
    output_max      the largest |D(x)| over the same samples (GN claims |f_hat| <= 1)

D is the function that is trained: for GN (regularizers/gradient_normalization.py) its output
f_hat = f / (||grad f|| + |f|), so grad_max is f_hat's gradient norm and output_max its largest
magnitude, the two numbers of GN's claim; the layer product bounds f, not f_hat
(`layer_product_is_bound` is false), and ascent_max may exceed 1 where f_hat jumps between two
of f's linear pieces, which the claim (1-Lipschitz piecewise) allows.

D is measured in eval mode. For every method but `bn` that is the function it trains; BN's D
is batch-coupled in train mode and has no per-sample Lipschitz constant, so it is measured as
the per-sample function it is in eval mode (running statistics), whose BN layers are fixed
per-channel scales, counted in the layer product.

Nothing here changes training: random numbers come from a private generator, G and D are put
back in the mode they were in, SN's u, v are read, never iterated, BN's running statistics are
not updated (eval mode), and gradients are taken with respect to inputs only.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data import to_model_range
from regularizers import weight_layers

# Layers of a chain D through which the layer product stays an upper bound as it is:
# 1-Lipschitz maps with no weight (an empty NormSlot is an Identity; a LeakyReLU counts
# when its slope is at most 1).
ONE_LIPSCHITZ = (nn.ReLU, nn.Flatten, nn.Identity)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def input_shapes(D: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The per-sample input shape of every Conv2d / Linear of D, from one forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_, args) -> None:  # returns None: the input goes on unchanged
            shapes.setdefault(name, tuple(args[0].shape[1:]))
        return hook

    hooks = [layer.register_forward_pre_hook(record(name)) for name, layer in weight_layers(D)]
    try:
        with torch.no_grad():
            D(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def linear_map(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> the layer's output without its bias: the linear part of the affine map it applies."""
    weight = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        return lambda x: F.linear(x, weight)
    return lambda x: layer._conv_forward(x, weight, None)  # honours padding_mode, stride, dilation, groups


def _orthonormal_rows(V: torch.Tensor) -> torch.Tensor:
    Q, _ = torch.linalg.qr(V.flatten(1).T)
    return Q.T.reshape(V.shape)


@torch.no_grad()
def subspace_iteration(apply: Callable[[torch.Tensor], torch.Tensor], V: torch.Tensor, *, iterations: int,
                       rtol: float) -> tuple[float, torch.Tensor]:
    """The largest singular value of the linear map `apply`, from the block of start vectors V
    (block x one sample's shape), and the orthonormal block it ended with (a warm start).

    Subspace iteration on A^T A with a Rayleigh-Ritz estimate: the estimate rises to sigma_max
    from below, the error shrinking by (sigma_{block+1} / sigma_1)^2 per step; it stops when a
    step changes it by less than `rtol` (relative).
    """
    with torch.enable_grad():
        _, adjoint = torch.func.vjp(apply, torch.zeros_like(V))  # a linear map's vjp is A^T anywhere
    sigma = 0.0
    for _ in range(iterations):
        Q = _orthonormal_rows(V)
        AQ = apply(Q)
        estimate = float(torch.linalg.svdvals(AQ.flatten(1))[0])
        converged = estimate - sigma <= rtol * estimate
        sigma = max(sigma, estimate)
        if converged:
            break
        V = adjoint(AQ)[0]
    return sigma, Q


def operator_norm(apply: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], *, iterations: int = 50,
                  rtol: float = 1e-4, block: int = 4, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """The largest singular value of the linear map `apply` on inputs of `shape` (one sample),
    by subspace iteration from a random block."""
    V = torch.randn(min(block, math.prod(shape)), *shape, generator=generator, dtype=dtype).to(device)
    return subspace_iteration(apply, V, iterations=iterations, rtol=rtol)[0]


def layer_operator_norms(D: nn.Module, shapes: dict[str, tuple[int, ...]], starts: dict[str, torch.Tensor],
                         generator: torch.Generator, *, iterations: int = 50, rtol: float = 1e-4,
                         block: int = 4) -> dict[str, float | None]:
    """Per Conv2d / Linear of D, the operator norm of the layer as applied at its input shape
    (None for a layer with non-finite weights, or one the forward pass never reached).

    A conv's subspace iteration starts from `starts[name]` when it holds a block of the right
    shape (the previous evaluation's: weights move little between evaluations, so a few steps
    refine it), else from random vectors; the block it ends with is left in `starts`."""
    norms: dict[str, float | None] = {}
    for name, layer in weight_layers(D):
        weight = layer.weight.detach()
        if name not in shapes or not torch.isfinite(weight).all():
            norms[name] = None
        elif isinstance(layer, nn.Linear):  # exact: the matrix norm, whatever the input's shape
            norms[name] = float(torch.linalg.matrix_norm(weight.double(), ord=2))
        else:
            shape = shapes[name]
            V = starts.get(name)
            if V is None or tuple(V.shape[1:]) != shape:
                V = torch.randn(min(block, math.prod(shape)), *shape, generator=generator, dtype=weight.dtype)
            norms[name], starts[name] = subspace_iteration(linear_map(layer), V.to(weight), iterations=iterations,
                                                           rtol=rtol)
    return norms


def batch_norm_scales(D: nn.Module) -> dict[str, float]:
    """Per BN layer of D in eval mode, the largest per-channel factor |gamma| / sqrt(running_var + eps)."""
    scales = {}
    for name, m in D.named_modules():
        if isinstance(m, BATCH_NORMS) and m.running_var is not None:
            scale = (m.running_var + m.eps).rsqrt()
            if m.weight is not None:
                scale = scale * m.weight.detach().abs()
            scales[name] = float(scale.max())
    return scales


def layer_product_is_bound(D: nn.Module) -> bool:
    """Whether D is a chain whose every link is a counted layer (Conv2d, Linear, BN in eval
    mode) or 1-Lipschitz: then the product of the links' norms bounds D's Lipschitz constant."""
    if not isinstance(D, nn.Sequential) or type(D).forward is not nn.Sequential.forward:
        return False  # residual blocks: a sum of branches, not a chain; GN: a chain's output, normalized
    for m in D.children():
        counted = isinstance(m, (nn.Conv2d, nn.Linear, *BATCH_NORMS))
        one_lipschitz = isinstance(m, ONE_LIPSCHITZ) or (isinstance(m, nn.LeakyReLU) and abs(m.negative_slope) <= 1)
        if not (counted or one_lipschitz):
            return False
    return True


def outputs_and_gradient_norms(D: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """D(x) and ||grad_x D(x)|| per sample (D in eval mode: one sample's output depends on it alone)."""
    outputs, norms = [], []
    for chunk in x.split(batch_size):
        chunk = chunk.detach().clone().requires_grad_(True)
        out = D(chunk)
        (grad,) = torch.autograd.grad(out.sum(), chunk)
        outputs.append(out.detach().flatten())
        norms.append(grad.flatten(1).norm(dim=1))
    return torch.cat(outputs), torch.cat(norms)


def gradient_norms(D: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """||grad_x D(x)|| per sample."""
    return outputs_and_gradient_norms(D, x, batch_size)[1]


def pair_ascent(D: nn.Module, x: torch.Tensor, steps: int, radius: float) -> float:
    """The largest |D(x) - D(y)| / ||x - y|| seen in `steps` of normalized gradient ascent on both
    points of each pair, y starting at x + radius * sqrt(dim) along grad_x D(x)."""
    dim = x[0].numel()
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    direction = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
    step = radius * math.sqrt(dim)
    y = (x.detach() + step * direction).requires_grad_(True)
    best = 0.0
    for i in range(steps + 1):
        ratio = (D(x) - D(y)).flatten().abs() / (x - y).flatten(1).norm(dim=1).clamp_min(1e-12)
        best = max(best, float(ratio.detach().max()))
        if i == steps:
            break
        gx, gy = torch.autograd.grad(ratio.sum(), (x, y))
        with torch.no_grad():
            for point, g in ((x, gx), (y, gy)):
                norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
                point.add_(0.5 * step * g / norm)
    return best


class LipschitzDiagnostics:
    """The diagnostics of one run, on inputs fixed at construction from `seed`: the same real
    samples, latents and interpolation weights at every evaluation and for every method."""

    def __init__(self, cfg, data: torch.Tensor, z_dim: int, seed: int, batch_size: int):
        self.cfg = cfg
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)  # private: training's random numbers stay untouched
        n = min(cfg.samples, len(data))
        index = torch.randperm(len(data), generator=self.generator)[:n].to(data.device)
        self.real = to_model_range(data[index])
        self.z = torch.randn(n, z_dim, generator=self.generator).to(data.device)
        alpha = torch.rand(n, *[1] * (self.real.dim() - 1), generator=self.generator)
        self.alpha = alpha.to(data.device)
        self.start_vectors: dict[str, torch.Tensor] = {}  # per conv, the last subspace iteration's block

    def state_dict(self) -> dict:
        """The warm starts, saved with a checkpoint so that a resumed run measures what it would have."""
        return {name: V.cpu() for name, V in self.start_vectors.items()}

    def load_state_dict(self, state: dict) -> None:
        self.start_vectors = dict(state)

    def measure(self, G: nn.Module, D: nn.Module) -> dict:
        start = time.perf_counter()
        g_training, d_training = G.training, D.training
        G.eval()
        D.eval()
        try:
            with torch.no_grad():
                fake = torch.cat([G(z) for z in self.z.split(self.batch_size)])
            sources = {"real": self.real, "generated": fake,
                       "interpolated": self.alpha * self.real + (1 - self.alpha) * fake}
            measured = {name: outputs_and_gradient_norms(D, x, self.batch_size) for name, x in sources.items()}
            outputs = {name: out.abs() for name, (out, _) in measured.items()}
            norms = {name: grad for name, (_, grad) in measured.items()}
            everything = torch.cat(list(norms.values()))
            operator = layer_operator_norms(D, input_shapes(D, self.real), self.start_vectors, self.generator,
                                            iterations=self.cfg.power_iterations)
            scales = batch_norm_scales(D)
            factors = [*operator.values(), *scales.values()]
            product = math.prod(factors) if all(f is not None for f in factors) else None
            grad_max = float(everything.max())
            ascent = None
            if self.cfg.ascent_steps > 0:
                top = everything.topk(min(self.cfg.ascent_pairs, len(everything))).indices
                start_points = torch.cat(list(sources.values()))[top]
                ascent = max(grad_max, pair_ascent(D, start_points, self.cfg.ascent_steps, self.cfg.ascent_radius))
        finally:
            G.train(g_training)
            D.train(d_training)
        record = {
            "grad_max": grad_max,
            "grad_mean": float(everything.mean()),
            "output_max": float(torch.cat(list(outputs.values())).max()),
            "ascent_max": ascent,
            "layer_product": product,
            "layer_product_is_bound": layer_product_is_bound(D),
            "operator_norm": operator,
            "batch_norm_scale": scales,
            "by_source": {name: {"grad_max": float(v.max()), "grad_mean": float(v.mean()),
                                 "output_max": float(outputs[name].max())} for name, v in norms.items()},
            "samples_per_source": len(self.real),
        }
        record = _finite_or_none(record)
        record["seconds"] = time.perf_counter() - start
        return record


def _finite_or_none(value):
    """JSON-safe numbers: NaN / inf (a diverging D) become None, as in the trainer's rows."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
