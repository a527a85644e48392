"""The methods since the SN paper (issue 31): gradient normalization (gn), bidirectional scaled SN
(bssn), LeCam (lecam), and the relativistic pairing loss (rpgan) of R3GAN's objective."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import regularizers
from benchmark import losses
from benchmark.config import ConfigError, compose_config, validate
from benchmark.contract import read_jsonl
from benchmark.lipschitz import layer_product_is_bound, outputs_and_gradient_norms
from benchmark.models import build_models
from benchmark.trainer import Trainer
from regularizers import as_matrix, weight_layers
from regularizers.bidirectional_scaled_spectral_norm import BidirectionalScaledNormalized, transposed_matrix
from regularizers.gradient_normalization import raw_output


def small_cnn() -> nn.Module:
    """A piecewise-linear D as the standard CNN is: convs, LeakyReLU, a dense layer, no batch norm."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, 1, 1), nn.LeakyReLU(0.1), nn.Conv2d(4, 6, 4, 2, 1), nn.LeakyReLU(0.1),
                         nn.Flatten(), nn.Linear(6 * 3 * 3, 1))


def ring8(*overrides: str):
    return compose_config(["dataset=ring8", "budget=smoke", "progress=false", *overrides])


# ------------------------------------------------------------------ gn
def test_gn_output_is_f_over_its_gradient_norm_plus_its_magnitude_with_the_gradient_in_the_graph():
    D = regularizers.build("gn").attach(small_cnn())
    names = [name for name, _ in weight_layers(D)]
    assert names == ["0", "2", "5"] and "0.weight" in D.state_dict()  # layers keep their names
    x = torch.randn(5, 2, 6, 6)
    f_hat = D(x)
    for i in range(len(x)):  # per sample, by hand
        xi = x[i:i + 1].clone().requires_grad_(True)
        f = raw_output(D, xi)
        (g,) = torch.autograd.grad(f.sum(), xi)
        assert f_hat[i].item() == pytest.approx((f / (g.norm() + f.abs())).item(), rel=1e-5)
    # D's weights get the gradient through ||grad_x f|| too (double backward), not through f alone
    f_hat.sum().backward()
    with_graph = [p.grad.clone() for p in D.parameters()]
    D.zero_grad()
    x_ = x.clone().requires_grad_(True)
    f = raw_output(D, x_)
    (g,) = torch.autograd.grad(f.sum(), x_, retain_graph=True)  # no create_graph: the norm is a constant
    (f / (g.flatten(1).norm(dim=1, keepdim=True) + f.abs())).sum().backward()
    assert not all(torch.allclose(a, p.grad) for a, p in zip(with_graph, D.parameters(), strict=True))


def test_gn_gives_the_same_values_without_a_graph_under_no_grad():
    D = regularizers.build("gn").attach(small_cnn())
    x = torch.randn(3, 2, 6, 6)
    with torch.no_grad():
        values = D(x)
    assert values.grad_fn is None and torch.allclose(values, D(x))


@pytest.mark.parametrize("model, data", [("mlp", (2,)), ("cnn", (1, 32, 32))])
def test_gn_keeps_f_hat_within_one_and_its_gradient_norm_at_most_one_whatever_f_s_scale(model, data):
    """On a random piecewise-linear D scaled so that f's gradients are far above 1 (f_hat does not see
    the scale: f_hat(c f) = f_hat(f)), measured by the project's Lipschitz diagnostics."""
    cfg = compose_config([f"model={model}", "model.width=0.125"] if model == "cnn" else ["dataset=ring8"])
    torch.manual_seed(0)
    _, D = build_models(cfg.model, data, 128)
    x = torch.randn(64, *data)
    last = list(weight_layers(D))[-1][1]
    scale = 100 / outputs_and_gradient_norms(D, x, 64)[1].max()
    with torch.no_grad():  # f times scale, whose largest gradient norm is then 100
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    f, f_grads = outputs_and_gradient_norms(D, x, 64)
    assert f_grads.max() > 10  # the unnormalized D is far from 1-Lipschitz
    D = regularizers.build("gn").attach(D)
    f_hat, grads = outputs_and_gradient_norms(D, x, 64)
    assert f_hat.abs().max() <= 1 and grads.max() <= 1 + 1e-5
    assert torch.equal(f_hat.sign(), f.sign())


def test_gn_bound_holds_on_a_trained_d_in_the_diagnostics_the_claims_check_reads(tmp_path):
    """GN's claim on ring8 after training: |f_hat| <= 1 and ||grad f_hat|| <= 1 on the fixed real,
    generated and interpolated samples, the record's `output_max` and `grad_max`."""
    trainer = Trainer(ring8("regularizer=gn", "setting=D", "budget.iterations=60", "eval.every=60"), tmp_path)
    trainer.fit()
    record = trainer.last_lipschitz
    assert record["iteration"] == 60 and not record["layer_product_is_bound"]  # the product bounds f, not f_hat
    assert 0.05 < record["output_max"] <= 1 and 0 < record["grad_max"] <= 1 + 1e-5
    assert all(s["output_max"] <= 1 and s["grad_max"] <= 1 + 1e-5 for s in record["by_source"].values())
    # the raw f of the same D is another function: measured, its numbers are not f_hat's
    raw = trainer.lipschitz.measure(trainer.G, RawOutput(trainer.D))
    assert raw["output_max"] != pytest.approx(record["output_max"], rel=1e-3)


class RawOutput(nn.Module):
    def __init__(self, D):
        super().__init__()
        self.D = D

    def forward(self, x):
        return raw_output(self.D, x)


def test_the_diagnostics_record_output_max_for_every_method_and_layer_product_bound_stays_for_chains(tmp_path):
    trainer = Trainer(ring8("regularizer=sn"), tmp_path)
    record = trainer.lipschitz.measure(trainer.G, trainer.D)
    with torch.no_grad():
        on_real = float(trainer.D(trainer.lipschitz.real).abs().max())
    assert record["by_source"]["real"]["output_max"] == pytest.approx(on_real, rel=1e-6)
    assert record["output_max"] >= on_real and record["layer_product_is_bound"]
    assert layer_product_is_bound(small_cnn()) and not layer_product_is_bound(regularizers.build("gn").attach(small_cnn()))


def test_gn_trains_eagerly_under_torch_compile_and_the_other_step_functions_compile(tiny_config, tmp_path):
    trainer = Trainer(tiny_config("regularizer=gn", "speed.compile=default"), tmp_path)
    assert trainer.d_loss == trainer._d_loss and trainer.g_loss == trainer._g_loss  # double backward: eager
    assert isinstance(trainer.generate, torch._dynamo.eval_frame.OptimizedModule)


# ------------------------------------------------------------------ bssn
def exact_sigma(matrix: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(matrix.detach().double())[0])


@pytest.mark.parametrize("scale, bidirectional", [(1.0, False), (1.0, True), (1.7, True), (0.8, False)])
def test_bssn_weight_is_scale_over_the_mean_spectral_norm_of_both_reshapings_by_svd(scale, bidirectional):
    reg = regularizers.build("bssn", scale=scale, bidirectional=bidirectional)
    D = reg.attach(small_cnn())
    for _ in range(300):  # iterations converge for a fixed W
        reg.after_step(D)
    for name, layer in weight_layers(D):
        W = layer.parametrizations.weight.original.detach()
        sigma = exact_sigma(as_matrix(W))
        if bidirectional and W.dim() == 4:
            sigma = (sigma + exact_sigma(transposed_matrix(W))) / 2
        torch.testing.assert_close(layer.weight.detach(), scale * W / sigma, rtol=1e-3, atol=1e-6, msg=name)
    if not bidirectional:  # plain SN (scaled): every layer's spectral norm is the scale
        assert all(exact_sigma(as_matrix(layer.weight)) == pytest.approx(scale, rel=1e-3)
                   for _, layer in weight_layers(D))


def test_bssn_takes_both_reshapings_of_a_conv_only_and_its_sigma_is_not_sn_s():
    W = torch.randn(8, 3, 4, 4)
    assert transposed_matrix(W).shape == (3, 8 * 16)
    assert exact_sigma(as_matrix(W)) != pytest.approx(exact_sigma(transposed_matrix(W)), rel=1e-2)
    assert BidirectionalScaledNormalized(torch.randn(5, 4), 1.0, True, 1e-12).columns is None  # dense: W^T, same sigma


def test_bssn_iterates_once_per_d_update_not_per_forward_and_saves_both_vector_pairs():
    reg = regularizers.build("bssn")
    D = reg.attach(small_cnn())
    normalized = D[0].parametrizations.weight[0]
    before = {k: v.clone() for k, v in D.state_dict().items()}
    for _ in range(3):  # G step, penalty and logging calls of D
        D(torch.randn(2, 2, 6, 6))
    assert all(torch.equal(v, before[k]) for k, v in D.state_dict().items())
    reg.after_step(D)
    assert not torch.equal(normalized.columns.u, before["0.parametrizations.weight.0.columns.u"])
    assert {"0.parametrizations.weight.0.rows.u", "0.parametrizations.weight.0.columns.v",
            "5.parametrizations.weight.0.rows.v"} <= set(D.state_dict())


def test_bssn_as_plain_sn_trains_what_sn_trains(tmp_path):
    """bidirectional=false, scale=1 is SN: the same random u, v, the same iteration, the same weights."""
    runs = {}
    for name, overrides in {"sn": ("regularizer=sn",),
                            "bssn": ("regularizer=bssn", "regularizer.bidirectional=false")}.items():
        trainer = Trainer(ring8(*overrides, "setting=D", "eval=none", "budget.iterations=3"), tmp_path / name)
        trainer.fit()
        runs[name] = [layer.weight.detach() for _, layer in weight_layers(trainer.D)]
    for sn, bssn in zip(runs["sn"], runs["bssn"], strict=True):
        torch.testing.assert_close(bssn, sn, rtol=1e-5, atol=1e-7)


def test_bssn_refuses_a_non_boolean_bidirectional_and_a_scale_of_zero():
    with pytest.raises(ValueError, match="regularizer.bidirectional='yes': must be true or false"):
        regularizers.build("bssn", bidirectional="yes")
    with pytest.raises(ValueError, match="regularizer.scale"):
        regularizers.build("bssn", scale=0.0)


# ------------------------------------------------------------------ lecam
def lecam_by_hand(batches, weight=0.3, decay=0.99):
    """The penalty of each step, with zero-debiased moving averages of the batch means."""
    biased_real = biased_fake = 0.0
    values = []
    for t, (real, fake) in enumerate(batches, start=1):
        biased_real = decay * biased_real + (1 - decay) * real.mean().item()
        biased_fake = decay * biased_fake + (1 - decay) * fake.mean().item()
        a_real, a_fake = biased_real / (1 - decay ** t), biased_fake / (1 - decay ** t)
        values.append(weight * (F.relu(real - a_fake).pow(2).mean() + F.relu(a_real - fake).pow(2).mean()).item())
    return values


def test_lecam_penalty_anchors_each_side_at_the_moving_average_of_the_other():
    torch.manual_seed(0)
    batches = [(torch.randn(16, 1) + 2, torch.randn(16, 1) - 1 + 0.1 * t) for t in range(30)]
    reg = regularizers.build("lecam")
    values = [reg.score_penalty(real, fake).item() for real, fake in batches]
    assert values == pytest.approx(lecam_by_hand(batches), rel=1e-5)
    assert reg.anchors()[0].item() == pytest.approx(2.0, abs=0.3)  # a_real follows D's mean on real data
    # the first step's anchors are that step's means (zero-debiased), so its penalty is not zero
    assert values[0] > 0
    # resumed from its state, the next penalties are the same bit for bit
    resumed = regularizers.build("lecam")
    resumed.load_state_dict(reg.state_dict())
    more = [(torch.randn(16, 1), torch.randn(16, 1)) for _ in range(3)]
    assert [resumed.score_penalty(r, f).item() for r, f in more] == [reg.score_penalty(r, f).item() for r, f in more]


def test_lecam_reads_the_d_steps_own_scores_in_a_combination(tmp_path):
    combo = regularizers.build("sn+lecam")
    assert combo.reads_scores and combo.kind == "combination"
    trainer = Trainer(ring8("regularizer=combo", "regularizer.parts=[sn,lecam]", "eval=none", "budget.iterations=2",
                            "setting=A"), tmp_path)
    calls = []
    original = trainer.D.forward
    trainer.D.forward = lambda x: (calls.append(len(x)), original(x))[1]
    trainer.d_step()
    assert calls == [2 * trainer.cfg.batch_size]  # one joint call: LeCam does not call D again
    assert trainer.regularizer.parts[1].steps == 1


# ------------------------------------------------------------------ resume, for the methods with state
@pytest.mark.parametrize("overrides", [
    ("regularizer=combo", "regularizer.parts=[sn,lecam]"),          # LeCam's averages, SN's u
    ("regularizer=bssn", "regularizer.scale=1.4"),                  # both vector pairs
    ("regularizer=gn", "loss=rpgan"),                               # G's real batches from the stream
])
def test_a_resumed_run_of_the_new_methods_goes_on_bit_for_bit(overrides, tmp_path, monkeypatch):
    config = ring8(*overrides, "setting=D", "eval=none", "budget.iterations=4", "budget.log_every=1",
                   "budget.checkpoint_every=2")
    straight = Trainer(config, tmp_path / "straight")
    straight.fit()
    killed = Trainer(config, tmp_path / "killed")
    step = killed.train_one_update

    def die_after_the_checkpoint():
        if killed.iteration == 3:
            raise KeyboardInterrupt
        step()

    monkeypatch.setattr(killed, "train_one_update", die_after_the_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    resumed = Trainer(config, tmp_path / "killed")
    resumed.fit()
    for a, b in ((resumed.D, straight.D), (resumed.G, straight.G)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(tmp_path / "killed" / "metrics.jsonl")]
    assert rows == [{k: v for k, v in r.items() if k != "seconds"}
                    for r in read_jsonl(tmp_path / "straight" / "metrics.jsonl")]


# ------------------------------------------------------------------ rpgan
def test_rpgan_pairs_each_generated_sample_with_a_real_one():
    real, fake = torch.randn(8, 1), torch.randn(8, 1)
    assert losses.d_loss("rpgan", real, fake).item() == pytest.approx(F.softplus(fake - real).mean().item())
    assert losses.g_loss("rpgan", fake, real).item() == pytest.approx(F.softplus(real - fake).mean().item())
    shuffled = fake[torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])]
    assert losses.d_loss("rpgan", real, shuffled).item() != pytest.approx(losses.d_loss("rpgan", real, fake).item())
    assert losses.g_loss("ns", fake).item() == pytest.approx(F.softplus(-fake).mean().item())  # unpaired as before


def test_rpgan_g_step_scores_a_real_batch_of_g_s_size_drawn_from_the_stream(tmp_path):
    trainer = Trainer(ring8("loss=rpgan", "setting=opt", "eval=none"), tmp_path)  # opt: G's batch is 2x
    noise, stream = trainer.noise.get_state(), trainer.batches.state_dict()
    n = trainer.cfg.batch_size * 2
    real = torch.cat([trainer.batches.next(), trainer.batches.next()])
    z = trainer.sample_z(n)
    with torch.no_grad():
        expected = F.softplus(trainer.D(real) - trainer.D(trainer.G(z))).mean()
    trainer.noise.set_state(noise)
    trainer.batches.load_state_dict(stream)
    loss = trainer.g_step()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert trainer.batches.position == stream["position"] + n


def test_r3gan_objective_is_one_command_and_a_preset():
    cfg = compose_config(["loss=rpgan", "regularizer=combo", "regularizer.parts=[r1,r2]"])
    assert (cfg.loss.name, cfg.regularizer.name) == ("rpgan", "r1+r2")
    preset = compose_config(["+experiment=r3gan", "loss=rpgan", "regularizer.parts=[r1,r2]", "setting=C"])
    validate(preset)
    built = regularizers.build(preset.regularizer.name, parts=list(preset.regularizer.parts),
                               options=dict(preset.regularizer.options))
    assert [(p.name, p.gamma) for p in built.parts] == [("r1", 0.05), ("r2", 0.05)]
    assert (preset.loss.name, preset.dataset.name) == ("rpgan", "cifar10")


# ------------------------------------------------------------------ combinations
@pytest.mark.parametrize("parts, reason", [
    (["gn", "bn"], "per-sample input gradients"),
    (["gn", "wgangp"], "third derivatives"),
    (["gn", "r1"], "third derivatives"),
    (["bssn", "sn"], "both reparametrize every weight"),
    (["bssn", "wc"], "the projection's bound is lost"),
    (["lecam", "lecam"], "given twice"),
])
def test_new_methods_in_nonsense_combinations_are_refused_with_the_reason(parts, reason):
    with pytest.raises(ValueError, match=reason):
        regularizers.build("combo", parts=parts)


@pytest.mark.parametrize("parts", [["sn", "lecam"], ["gn", "lecam"], ["sn", "gn"], ["bssn", "lecam"], ["bssn", "r1"],
                                   ["bn", "lecam"], ["r1", "r2", "lecam"], ["bssn", "gn"]])
def test_new_methods_combine_where_that_makes_sense(parts):
    assert regularizers.refusal([regularizers.build(p) for p in parts]) is None


# ------------------------------------------------------------------ every tier
@pytest.mark.parametrize("method", [("regularizer=gn",), ("regularizer=bssn",), ("regularizer=lecam",),
                                    ("loss=rpgan", "regularizer=combo", "regularizer.parts=[r1,r2]")])
def test_each_new_method_trains_on_images_and_a_cifar10_shaped_config_runs(method, tiny_config, tmp_path):
    result = Trainer(tiny_config(*method, "setting=D"), tmp_path / "fmnist").fit()
    assert result["status"] == "completed" and all(math.isfinite(v) for v in result["final"].values())
    cfg = compose_config([*method, "dataset=cifar10", "model.width=0.0625", "batch_size=8", "budget=smoke",
                          "eval=none", "progress=false"])
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    assert Trainer(cfg, tmp_path / "cifar10", data=images).fit()["status"] == "completed"


def test_the_config_check_names_a_bad_option_of_a_new_method():
    with pytest.raises(ConfigError, match="regularizer.decay=1.0"):
        validate(compose_config(["regularizer=lecam", "regularizer.decay=1.0"]))
