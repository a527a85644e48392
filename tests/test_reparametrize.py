"""SN, WN, FN, BSSN and the orthonormal penalty act on all of D's layers at once (regularizers/reparametrize.py,
docs/cost.md): the same numbers as the per-layer expressions, bit for bit, in fewer operations."""
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import regularizers
from benchmark import bench
from benchmark.op_count import step_counts
from benchmark.trainer import Trainer
from regularizers import as_matrix, weight_layers
from regularizers.bidirectional_scaled_spectral_norm import transposed_matrix
from regularizers.reparametrize import Normalized

EPS = 1e-12


def per_layer(name: str, layer: nn.Module) -> torch.Tensor:
    """A layer's normalized weight as the plain per-layer expression, differentiated by autograd."""
    W = layer.parametrizations.weight.original
    if name == "sn":
        sn = layer.parametrizations.weight[0]
        return W / torch.dot(sn.u, as_matrix(W) @ sn.v).clamp_min(EPS)
    if name == "bssn":
        bssn = layer.parametrizations.weight[0]
        sigma = torch.dot(bssn.rows.u, as_matrix(W) @ bssn.rows.v)
        if bssn.columns is not None:
            sigma = (sigma + torch.dot(bssn.columns.u, transposed_matrix(W) @ bssn.columns.v)) / 2
        return W / sigma.clamp_min(EPS) * bssn.scale
    if name == "wn":
        return W / as_matrix(W).norm(dim=1).clamp_min(EPS).view(-1, *([1] * (W.dim() - 1)))
    return W / W.norm().clamp_min(EPS)


def small_d() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.LeakyReLU(0.1), nn.Conv2d(8, 16, 4, 2, 1),
                         nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(16 * 4 * 4, 1))


def outputs_and_gradients(D: nn.Module, weight_of) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """D's output on fixed inputs and the raw weights' gradients, the conv and dense layers
    taking their weights from `weight_of(layer)`."""
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    layers = [layer for _, layer in weight_layers(D)]
    h = x
    for module in D:
        if module in layers:
            w = weight_of(module)
            h = (nn.functional.conv2d(h, w, module.bias, module.stride, module.padding)
                 if isinstance(module, nn.Conv2d) else nn.functional.linear(h, w, module.bias))
        else:
            h = module(h)
    originals = [layer.parametrizations.weight.original for layer in layers]
    grads = torch.autograd.grad((h ** 2).sum(), originals)
    return h.detach(), list(grads)


OPTIONS = {"bssn": {"scale": 1.7}}  # a scale other than 1, so that its gradient is tested


@pytest.mark.parametrize("name", ["sn", "wn", "fn", "bssn"])
@pytest.mark.parametrize("degenerate", [False, True])
def test_all_layers_at_once_gives_the_per_layer_expressions_numbers_bit_for_bit(name, degenerate):
    torch.manual_seed(0)
    D = regularizers.build(name, **OPTIONS.get(name, {})).attach(small_d())
    if degenerate:  # a scale below eps: clamp_min's zero gradient and the norm's 0 / 0
        with torch.no_grad():
            D[0].parametrizations.weight.original[0].zero_()
            if name == "fn":
                D[0].parametrizations.weight.original.zero_()
    with parametrize.cached():
        batched = outputs_and_gradients(D, lambda layer: layer.weight)
    reference = outputs_and_gradients(D, lambda layer: per_layer(name, layer))
    assert torch.equal(batched[0], reference[0])
    for ours, theirs in zip(batched[1], reference[1], strict=True):
        assert torch.equal(ours, theirs)


def test_row_norms_of_channels_last_weights_agree_within_rounding():
    """WN reduces each row in memory order: under speed.channels_last that is another order of the
    same sum than the per-layer expression's (which copies the weight to rows first)."""
    torch.manual_seed(0)
    D = regularizers.build("wn").attach(small_d()).to(memory_format=torch.channels_last)
    with parametrize.cached():
        batched = outputs_and_gradients(D, lambda layer: layer.weight)
    reference = outputs_and_gradients(D, lambda layer: per_layer("wn", layer))
    torch.testing.assert_close(batched[0], reference[0])
    for ours, theirs in zip(batched[1], reference[1], strict=True):
        torch.testing.assert_close(ours, theirs)


def test_orthonormal_penalty_of_all_layers_gives_the_per_layer_sums_numbers_bit_for_bit():
    torch.manual_seed(0)
    reg = regularizers.build("ortho", beta=0.3)
    D = reg.attach(small_d())
    with torch.no_grad():
        D[0].weight.mul_(1.5)  # away from the orthonormal init, where the gradient is zero
    weights = [layer.weight for _, layer in weight_layers(D)]

    def per_layer_penalty(W):
        M = as_matrix(W)
        M = M.t() if M.shape[0] < M.shape[1] else M
        G = M.t() @ M
        return ((G - torch.eye(G.shape[0])) ** 2).sum()

    ours = reg.penalty(D, None, None)
    theirs = 0.3 * sum(per_layer_penalty(W) for W in weights)
    assert torch.equal(ours, theirs)
    for a, b in zip(torch.autograd.grad(ours, weights), torch.autograd.grad(theirs, weights), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["sn", "wn", "fn"])
def test_a_forward_pass_of_d_normalizes_its_layers_once_together_and_a_lone_read_one_layer(name, monkeypatch):
    D = regularizers.build(name).attach(small_d())
    calls = []
    cls = type(D[0].parametrizations.weight[0])
    original = cls.normalize_all
    monkeypatch.setattr(cls, "normalize_all", lambda self, members, weights: (
        calls.append(len(members)), original(self, members, weights))[1])
    D(torch.randn(2, 3, 8, 8))
    assert calls == [3]
    calls.clear()
    lone = D[2].weight  # a diagnostic reading one layer outside D's forward
    assert calls == [1]
    torch.testing.assert_close(lone, per_layer(name, D[2]), rtol=0, atol=0)
    assert isinstance(D[2].parametrizations.weight[0], Normalized)


# The ATen operations each method added to the standard CNN's D step (width 0.125, batch 16,
# setting A) before the layers were normalized together (issue 32); the methods add at most half.
EXTRA_OPS_BEFORE = {"sn": 277, "wn": 198, "fn": 152, "ortho": 183}


def test_reparametrizations_add_at_most_half_the_d_step_operations_they_used_to():
    args = bench.parse(["--width", "0.125", "--batch", "16", "--device", "cpu"])
    data = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["none", *EXTRA_OPS_BEFORE]:
            trainer = Trainer(bench.bench_config(name, args, []), Path(tmp) / name, data=data)
            counts[name] = step_counts(trainer)["ops_per_d_step"]
    for name, before in EXTRA_OPS_BEFORE.items():
        assert counts[name] - counts["none"] <= before // 2, name
