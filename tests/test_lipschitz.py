import json

import pytest
import torch
from torch import nn

from benchmark.config import compose_config
from benchmark.contract import read_jsonl
from benchmark.lipschitz import (
    LipschitzDiagnostics,
    gradient_norms,
    input_shapes,
    layer_operator_norms,
    layer_product_is_bound,
    linear_map,
    operator_norm,
)
from benchmark.models import build_models
from benchmark.trainer import Trainer
from tests.helpers import TINY_IMAGES

EXACT = dict(iterations=1000, rtol=1e-12, dtype=torch.float64)


def dense_operator(layer: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of the layer's linear map on inputs of `shape`, column by column (basis vectors)."""
    n = torch.Size(shape).numel()
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    return linear_map(layer)(basis).flatten(1).T


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,size", [
    (2, 3, 3, 1, 1, 6),   # the standard CNN's 3x3 stride-1 convs
    (2, 3, 4, 2, 1, 8),   # its 4x4 stride-2 convs
    (3, 2, 3, 2, 0, 7),   # no padding, odd size: the last row and column are never read
    (1, 4, 5, 3, 2, 9),   # stride 3
    (3, 3, 3, 1, 0, 5),   # valid convolution
])
def test_conv_operator_norm_equals_the_dense_operators_largest_singular_value(cin, cout, kernel, stride, padding,
                                                                               size):
    torch.manual_seed(0)
    layer = nn.Conv2d(cin, cout, kernel, stride, padding).double()
    exact = torch.linalg.svdvals(dense_operator(layer, (cin, size, size)))[0]
    assert operator_norm(linear_map(layer), (cin, size, size), **EXACT) == pytest.approx(float(exact), rel=1e-8)


@pytest.mark.parametrize("kernel,stride,size", [(3, 1, 8), (4, 2, 8), (3, 2, 9)])
def test_conv_operator_norm_is_at_most_the_reshaped_sigma_times_the_patch_overlap(kernel, stride, size):
    """Each input pixel lies in at most ceil(k/s)^2 patches, so ||conv|| <= sqrt(ceil(k/s)^2) sigma(reshaped):
    docs/lipschitz.md's reading of SN's table (3 for the 3x3 stride-1 convs, 2 for the 4x4 stride-2 ones)."""
    torch.manual_seed(0)
    layer = nn.Conv2d(1, 8, kernel, stride, kernel // 2).double()
    with torch.no_grad():
        layer.weight.abs_()  # all taps of one sign: the overlap adds up, as for a smoothing kernel
    reshaped = float(torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2))
    norm = operator_norm(linear_map(layer), (1, size, size), **EXACT)
    overlap = -(-kernel // stride)
    assert reshaped < norm <= overlap * reshaped


def test_operator_norm_of_a_1x1_conv_is_the_norm_of_its_matrix():
    torch.manual_seed(0)
    layer = nn.Conv2d(5, 7, 1).double()
    matrix_norm = torch.linalg.matrix_norm(layer.weight.detach()[:, :, 0, 0], ord=2)
    assert operator_norm(linear_map(layer), (5, 6, 6), **EXACT) == pytest.approx(float(matrix_norm), rel=1e-8)


@pytest.mark.parametrize("kernel,size", [(3, 8), (5, 7)])
def test_circular_conv_operator_norm_matches_the_fft_formula(kernel, size):
    """Sedghi, Gupta, Long (2019): the singular values of a stride-1 circular conv are those of the
    c_out x c_in matrices of the 2-D DFT of the kernel zero-padded to n x n, one per frequency."""
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, kernel, padding=kernel // 2, padding_mode="circular", bias=False).double()
    transfer = torch.fft.fft2(layer.weight.detach(), s=(size, size))  # (c_out, c_in, n, n)
    fft_norm = torch.linalg.svdvals(transfer.permute(2, 3, 0, 1)).max()
    assert operator_norm(linear_map(layer), (3, size, size), **EXACT) == pytest.approx(float(fft_norm), rel=1e-8)
    exact = torch.linalg.svdvals(dense_operator(layer, (3, size, size)))[0]
    assert float(fft_norm) == pytest.approx(float(exact), rel=1e-10)


def test_linear_operator_norm_is_the_matrix_norm_and_convs_differ_from_the_reshaped_matrix():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(2, 3, 4, 2, 1), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(3 * 4 * 4, 1))
    starts = {}
    norms = layer_operator_norms(D, input_shapes(D, torch.zeros(1, 2, 8, 8)), starts, torch.Generator().manual_seed(0),
                                 iterations=500, rtol=1e-9)
    assert set(starts) == {"0"} and starts["0"].shape == (4, 2, 8, 8)  # the block a later call starts from
    assert set(norms) == {"0", "3"}
    assert norms["3"] == pytest.approx(float(torch.linalg.matrix_norm(D[3].weight.detach(), ord=2)), rel=1e-6)
    exact = torch.linalg.svdvals(dense_operator(D[0].double(), (2, 8, 8)))[0]
    assert norms["0"] == pytest.approx(float(exact), rel=1e-5)
    assert norms["0"] != pytest.approx(float(torch.linalg.matrix_norm(D[0].weight.detach().flatten(1), ord=2)), rel=0.01)


@pytest.mark.parametrize("dataset,model", [("ring8", "mlp"), ("fashion_mnist", "cnn")])
def test_layer_product_bounds_every_measured_gradient_norm(dataset, model):
    cfg = compose_config([f"dataset={dataset}", f"model={model}", "model.width=0.0625"] if model == "cnn"
                         else [f"dataset={dataset}"])
    shape = (2,) if model == "mlp" else (1, 32, 32)
    torch.manual_seed(0)
    G, D = build_models(cfg.model, shape, cfg.z_dim)
    data = torch.randn(64, *shape)
    probe = LipschitzDiagnostics(cfg.diagnostics, data, cfg.z_dim, seed=0, batch_size=32)
    record = probe.measure(G, D)
    assert record["layer_product_is_bound"]
    assert 0 < record["grad_mean"] <= record["grad_max"] <= record["ascent_max"] <= record["layer_product"]
    product = 1.0
    for value in record["operator_norm"].values():
        product *= value
    assert record["layer_product"] == pytest.approx(product)
    assert gradient_norms(D, data, 32).max() <= record["layer_product"] * (1 + 1e-4)


def test_residual_and_layer_normalized_discriminators_are_not_claimed_bounded():
    resnet = compose_config(["model=resnet", "model.width=0.0625"])
    _, D = build_models(resnet.model, (3, 32, 32), 128)
    assert not layer_product_is_bound(D)
    import regularizers
    cfg = compose_config(["dataset=ring8"])
    _, D = build_models(cfg.model, (2,), 128)
    assert not layer_product_is_bound(regularizers.build("ln").attach(D))


def test_every_method_gets_the_same_fixed_inputs():
    cfg = compose_config(["dataset=ring8"])
    data = torch.randn(500, 2)
    a, b = (LipschitzDiagnostics(cfg.diagnostics, data, cfg.z_dim, seed=0, batch_size=64) for _ in range(2))
    assert torch.equal(a.real, b.real) and torch.equal(a.z, b.z) and torch.equal(a.alpha, b.alpha)


@pytest.mark.parametrize("regularizer", ["sn", "bn"])
def test_measuring_leaves_models_buffers_modes_and_random_numbers_untouched(regularizer, tmp_path):
    """SN's u, v must not be iterated, BN's running statistics not updated, the global RNG not drawn."""
    cfg = compose_config(["dataset=ring8", "budget=smoke", "progress=false", f"regularizer={regularizer}"])
    trainer = Trainer(cfg, tmp_path)
    trainer.train_one_update()
    state = lambda: {**{f"D.{k}": v.clone() for k, v in trainer.D.state_dict().items()},  # noqa: E731
                     **{f"G.{k}": v.clone() for k, v in trainer.G.state_dict().items()},
                     **{f"D.{k}.grad": p.grad.clone() for k, p in trainer.D.named_parameters() if p.grad is not None}}
    before, rng = state(), torch.get_rng_state()
    record = trainer.lipschitz.measure(trainer.G, trainer.D)
    after = state()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert trainer.D.training and trainer.G.training and record["grad_max"] > 0
    if regularizer == "bn":  # BN's eval-mode scales are links of the chain
        assert set(record["batch_norm_scale"]) == {"norm2", "norm3"}


def test_diagnostics_are_recorded_apart_from_metrics_and_do_not_change_what_is_trained(tmp_path):
    runs = {}
    for switch in ("true", "false"):
        cfg = compose_config(["dataset=ring8", "budget.iterations=4", "budget.log_every=2",
                              "budget.checkpoint_every=2", "eval.every=2", "progress=false",
                              f"diagnostics.lipschitz={switch}"])
        runs[switch] = Trainer(cfg, tmp_path / switch).fit()
    on, off = runs["true"], runs["false"]
    assert on["final"] == off["final"] and on["spectral_norms"] == off["spectral_norms"]
    assert on["metrics"] == off["metrics"] and off["lipschitz"] is None
    rows = [r for r in read_jsonl(tmp_path / "true" / "metrics.jsonl") if "metrics" in r]
    assert [r["iteration"] for r in rows] == [2, 4]
    assert all(set(r["lipschitz"]) >= {"grad_max", "grad_mean", "layer_product", "operator_norm", "seconds"}
               for r in rows)
    assert not any("lipschitz" in name or "grad" in name for name in rows[-1]["metrics"])
    saved = json.loads((tmp_path / "true" / "result.json").read_text())["lipschitz"]
    assert saved == {"iteration": 4, **rows[-1]["lipschitz"]}
    assert set(saved["operator_norm"]) == set(on["spectral_norms"])


def test_tiny_image_run_records_conv_operator_norms(tmp_path, image_root):
    cfg = compose_config([*TINY_IMAGES, f"data_root={image_root}", "budget=smoke", "eval=none", "diagnostics.samples=16"])
    trainer = Trainer(cfg, tmp_path)  # eval=none: the classifier's metrics have tests of their own
    trainer.evaluator = type("NoMetrics", (), {"evaluate": lambda self, G, z_dim: {}, "identity": {}})()
    trainer.lipschitz = LipschitzDiagnostics(cfg.diagnostics, trainer.batches.data, cfg.z_dim, 0, 16)
    result = trainer.fit()
    norms = result["lipschitz"]["operator_norm"]
    assert list(norms) == [f"conv{i}" for i in range(1, 8)] + ["dense"]
    assert all(v > 0 for v in norms.values()) and result["lipschitz"]["samples_per_source"] == 16


def write_diagnosed_run(sweep, reg: str, setting: str, seed: int, grad: float, product: float, bound: bool = True,
                        loss: str = "ns", output: float | None = None, ascent: float | None = None, n_dis: int = 1,
                        iterations: int = 5000):
    run = sweep / f"budget={iterations},loss={loss},n_dis={n_dis},regularizer={reg},seed={seed},setting={setting}"
    (run / ".hydra").mkdir(parents=True)
    config = {"dataset": {"name": "ring8"}, "model": {"name": "mlp"}, "loss": {"name": loss},
              "regularizer": {"name": reg}, "setting": {"name": setting, "n_dis": n_dis}, "seed": seed,
              "budget": {"iterations": iterations}}
    (run / ".hydra" / "config.yaml").write_text(json.dumps(config))
    diagnostics = [{"grad_max": grad * i, "grad_mean": grad * i / 2, "ascent_max": ascent, "output_max": output,
                    "layer_product": product,
                    "layer_product_is_bound": bound, "operator_norm": {"linear1": 1.25, "dense": product / 1.25},
                    "seconds": 0.1} for i in (1, 2)]
    rows = [{"schema": 1, "iteration": 50 * i, "seconds": 1.0, "eval_seconds": 0.1, "metrics": {"mixture10k_modes": 8},
             "lipschitz": d} for i, d in zip((1, 2), diagnostics, strict=True)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = {"schema": 1, "status": "completed", "iteration": 100, "iterations_planned": 100, "config": config,
              "metrics": {"mixture10k_modes": 8}, "spectral_norms": {"linear1": 1.0, "dense": 1.0},
              "lipschitz": {"iteration": 100, **diagnostics[-1]}}
    (run / "result.json").write_text(json.dumps(result))


def test_report_draws_the_lipschitz_figure_and_sns_layer_table(tmp_path):
    from analysis.collect import collect
    from analysis.compare import Comparison
    from analysis.lipschitz import lipschitz_over_training
    from analysis.report import make_report
    sweep = tmp_path / "sweep"
    for seed, grad in ((0, 0.5), (1, 0.7), (2, 0.9)):
        write_diagnosed_run(sweep, "sn", "A", seed, grad, 1.5)
    write_diagnosed_run(sweep, "ln", "A", 0, 40.0, 8.0, bound=False)
    runs, evals = collect([sweep])
    table = lipschitz_over_training(Comparison(runs, evals))
    assert len(table) == 8 and set(table.iteration) == {50, 100}
    sn = table[(table.regularizer == "sn") & (table.iteration == 100)]
    assert sn.empirical.median() == pytest.approx(1.4)  # no ascent measured: grad_max stands
    assert "lipschitz" not in runs.columns and "grad_max" not in runs.columns  # never among the ranked metrics
    report = make_report([sweep], tmp_path / "out").read_text()
    assert (tmp_path / "out" / "lipschitz_ring8.png").is_file()
    assert "![Lipschitz constant of D on ring8](lipschitz_ring8.png)" in report
    assert "| linear1 | 1 / 1.25 |" in report and "| dense | 1 / 1.2 |" in report
    assert "since_the_paper" not in report  # no newer method ran


def test_methods_since_the_paper_get_a_figure_beside_sn_alone(tmp_path):
    from analysis.collect import collect
    from analysis.compare import Comparison
    from analysis.lipschitz import lipschitz_over_training, since_the_paper
    from analysis.report import make_report
    sweep = tmp_path / "sweep"
    write_diagnosed_run(sweep, "sn", "A", 0, 0.5, 1.5)
    write_diagnosed_run(sweep, "gn", "A", 0, 0.9, 30.0, bound=False)
    write_diagnosed_run(sweep, "r1+r2", "A", 0, 3.0, 20.0, loss="rpgan")
    write_diagnosed_run(sweep, "wc", "A", 0, 0.01, 0.02)
    runs, evals = collect([sweep])
    table = lipschitz_over_training(Comparison(runs, evals))
    assert sorted(set(table[since_the_paper(table)].regularizer)) == ["gn", "r1+r2"]
    report = make_report([sweep], tmp_path / "out").read_text()
    assert (tmp_path / "out" / "lipschitz_ring8_since_the_paper.png").is_file()
    assert "(lipschitz_ring8_since_the_paper.png)" in report


def test_every_method_is_in_the_legend_and_panels_run_in_numeric_order(tmp_path):
    """A reference with Figure 11's runs: the 5K contexts before the 10K one, n_dis 2 before n_dis 10,
    and a method the first panel lacks still in the legend."""
    from analysis.collect import collect
    from analysis.compare import Comparison
    from analysis.lipschitz import lipschitz_during_training, lipschitz_over_training
    sweep = tmp_path / "sweep"
    write_diagnosed_run(sweep, "sn", "A", 0, 0.5, 1.5)
    write_diagnosed_run(sweep, "ln", "B", 0, 40.0, 8.0)
    for n_dis in (10, 2):
        write_diagnosed_run(sweep, "wn", "D", 0, 9.0, 90.0, n_dis=n_dis, iterations=10000)
    figure = lipschitz_during_training(lipschitz_over_training(Comparison(*collect([sweep]))), "ring8")
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == ["budget.iterations=5000, setting A", "budget.iterations=5000, setting B",
                      "budget.iterations=10000, setting D n_dis=2", "budget.iterations=10000, setting D n_dis=10"]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["ln", "sn", "wn"]


@pytest.mark.parametrize("grad, output, verdict", [(0.5, 0.99, "holds"), (0.6, 0.99, "does not hold"),
                                                   (0.5, 1.01, "does not hold")])
def test_gn_bound_verdict_reads_f_hat_and_its_gradient_norm_not_the_difference_quotient(tmp_path, grad, output,
                                                                                        verdict):
    from analysis.claims import check_claims
    from analysis.collect import collect
    from analysis.compare import Comparison
    sweep = tmp_path / "sweep"
    for seed in (0, 1):  # the second evaluation's gradient norm is 2 * grad: 1.0 holds, 1.2 does not
        write_diagnosed_run(sweep, "gn", "A", seed, grad, 30.0, bound=False, output=output, ascent=2.5)
    runs, evals = collect([sweep])
    row = check_claims(Comparison(runs, evals)).set_index("where").loc["GN bound"]
    assert verdict in row.verdict
    assert f"max |f_hat| {output}" in row.numbers and "reaches 2.5" in row.numbers  # a quotient above 1 is no failure


def test_a_resumed_run_measures_what_an_uninterrupted_one_does(tmp_path, image_root):
    """The convs' subspace iterations start from the previous evaluation's blocks: the checkpoint carries them."""
    def trainer(run_dir, iterations: int) -> Trainer:
        cfg = compose_config([*TINY_IMAGES, f"data_root={image_root}", "eval=none", f"budget.iterations={iterations}",
                              "budget.log_every=1", "budget.checkpoint_every=1", "budget.sample_every=100",
                              "diagnostics.samples=8", "diagnostics.power_iterations=3"])
        t = Trainer(cfg, run_dir)  # eval=none: the classifier's metrics have tests of their own
        t.evaluator = type("NoMetrics", (), {"evaluate": lambda self, G, z_dim: {}, "identity": {}})()
        t.cfg.eval.every = 1
        t.lipschitz = LipschitzDiagnostics(cfg.diagnostics, t.batches.data, cfg.z_dim, 0, 8)
        return t

    def diagnostics(run_dir) -> list[dict]:
        return [{k: v for k, v in r["lipschitz"].items() if k != "seconds"}
                for r in read_jsonl(run_dir / "metrics.jsonl") if "lipschitz" in r]

    trainer(tmp_path / "straight", 3).fit()
    trainer(tmp_path / "resumed", 2).fit()
    trainer(tmp_path / "resumed", 3).fit()
    straight = diagnostics(tmp_path / "straight")
    assert len(straight) == 3 and diagnostics(tmp_path / "resumed") == straight
    # three steps from a cold start, then warm starts: the estimates of the convs keep rising
    assert straight[2]["operator_norm"] != straight[0]["operator_norm"]
