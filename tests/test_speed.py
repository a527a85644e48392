"""Every fast path (conf `speed:`) trains what the plain path trains: the same losses, update by
update, and the same D weights, within float tolerance. cudnn_benchmark and tf32 act on CUDA
only, so CPU cannot tell them apart; channels_last, fused Adam, the joint D call and
torch.compile (Inductor's CPU backend) are checked here."""
from types import SimpleNamespace

import pytest
import torch

import regularizers
from benchmark.config import ConfigError
from benchmark.speed import keeper
from benchmark.trainer import Trainer

PLAIN = ["speed.cudnn_benchmark=false", "speed.channels_last=false", "speed.fused_adam=false",
         "speed.joint_d_call=false", "speed.compile=false"]
UPDATES = 3


def train(tiny_config, tmp_path, *overrides: str) -> tuple[torch.Tensor, dict]:
    """Per-update (d_loss, g_loss, penalty) and D's final state after a few updates (setting A)."""
    trainer = Trainer(tiny_config("setting=A", *PLAIN, *overrides), tmp_path / "_".join(overrides))
    for _ in range(UPDATES):
        trainer.train_one_update()
    return torch.stack(trainer.pending), trainer.D.state_dict()


def assert_same_training(a, b) -> None:
    (losses_a, state_a), (losses_b, state_b) = a, b
    torch.testing.assert_close(losses_a, losses_b, rtol=1e-4, atol=1e-5)
    assert state_a.keys() == state_b.keys()
    # Adam's first steps are about lr * sign(gradient): where rounding moves a gradient entry
    # across zero, its weight moves by up to 2 lr (lr = 2e-4 here). Weights agree to a few lr.
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=1e-3, atol=1e-3, msg=key)


def first_d_step(tiny_config, tmp_path, *overrides: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The first D step's loss, penalty and D gradients (taken just before the optimizer step)."""
    trainer = Trainer(tiny_config("setting=A", *PLAIN, *overrides), tmp_path / "_".join(overrides))
    grads = {}
    step = trainer.opt_d.step

    def recording_step(*args, **kwargs):
        grads.update({name: p.grad.clone() for name, p in trainer.D.named_parameters()})
        return step(*args, **kwargs)

    trainer.opt_d.step = recording_step
    loss, penalty = trainer.d_step()
    return loss, penalty, grads


def assert_same_first_step(a, b) -> None:
    """For D with normalization layers, which training trajectories cannot be compared on: the
    bias before a norm layer has a gradient that is exactly zero but for rounding, and Adam turns
    that noise into steps of lr * sign(noise). Its first step's gradients can be compared: those
    zeros come out of sums that cancel, so they are compared to 1e-4 of the largest gradient."""
    torch.testing.assert_close(a[:2], b[:2], rtol=1e-4, atol=1e-5)
    assert a[2].keys() == b[2].keys()
    scale = max(g.abs().max() for g in a[2].values()).item()
    for name in a[2]:
        torch.testing.assert_close(a[2][name], b[2][name], rtol=1e-4, atol=1e-4 * scale, msg=name)


# D with normalization layers (bn, ln) is compared on its first step's gradients (see above).
NORM_LAYER_BASELINES = ("bn", "ln")


def assert_fast_path_matches_plain(tiny_config, tmp_path, regularizer: str, *switches: str) -> None:
    compare = first_d_step if regularizer in NORM_LAYER_BASELINES else train
    plain = compare(tiny_config, tmp_path, f"regularizer={regularizer}")
    fast = compare(tiny_config, tmp_path, f"regularizer={regularizer}", *switches)
    (assert_same_first_step if regularizer in NORM_LAYER_BASELINES else assert_same_training)(plain, fast)


@pytest.mark.parametrize("switch, regularizer", [
    ("speed.fused_adam=true", "none"),
    ("speed.fused_adam=true", "sn"),
    ("speed.joint_d_call=true", "sn"),
    ("speed.joint_d_call=true", "wgangp"),
    ("speed.joint_d_call=true", "ln"),
    ("speed.channels_last=true", "sn"),
    ("speed.channels_last=true", "ortho"),
    ("speed.channels_last=true", "bn"),
    ("speed.channels_last=true", "ln"),
])
def test_a_fast_switch_trains_what_the_plain_path_trains(tiny_config, tmp_path, switch, regularizer):
    assert_fast_path_matches_plain(tiny_config, tmp_path, regularizer, switch)


def test_the_switches_take_effect(tiny_config, tmp_path):
    """So that the comparisons above are not between two plain paths."""
    trainer = Trainer(tiny_config("regularizer=sn", "speed.channels_last=true", "speed.fused_adam=true",
                                  "speed.cudnn_benchmark=true", "speed.tf32=true"), tmp_path)
    conv = trainer.D.conv2.parametrizations.weight.original  # conv1 has one input channel: both layouts at once
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert all(group["fused"] for opt in (trainer.opt_d, trainer.opt_g) for group in opt.param_groups)
    assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    Trainer(tiny_config("regularizer=sn"), tmp_path / "defaults")
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize("regularizer", sorted(set(regularizers.REGISTRY) - {"bn"}))
def test_one_joint_d_call_scores_each_sample_as_separate_calls_do(tiny_config, tmp_path, regularizer):
    trainer = Trainer(tiny_config(f"regularizer={regularizer}"), tmp_path)
    assert trainer.joint_d_call
    real = trainer.batches.next()
    fake = trainer.G(trainer.sample_z(len(real))).detach()
    torch.testing.assert_close(trainer.D(torch.cat([real, fake])), torch.cat([trainer.D(real), trainer.D(fake)]))


def test_batch_norm_keeps_real_and_fake_in_separate_d_calls(tiny_config, tmp_path):
    # One call over real+fake would normalize with the statistics of both: another method.
    trainer = Trainer(tiny_config("regularizer=bn", "speed.joint_d_call=true"), tmp_path)
    assert not trainer.joint_d_call
    real = trainer.batches.next()
    fake = trainer.G(trainer.sample_z(len(real))).detach()
    separate = torch.cat([trainer.D(real), trainer.D(fake)])
    joint = trainer.D(torch.cat([real, fake]))
    assert not torch.allclose(separate, joint, atol=1e-3)


ALL_FAST = ["speed.cudnn_benchmark=true", "speed.channels_last=true", "speed.fused_adam=true",
            "speed.joint_d_call=true", "speed.compile=default"]


@pytest.mark.slow
@pytest.mark.parametrize("regularizer", ["sn", "wc", "ortho", "wgangp", "svc", "bn"])
def test_the_whole_fast_path_with_torch_compile_trains_what_the_plain_path_trains(tiny_config, tmp_path,
                                                                                  regularizer):
    """Every switch on, Inductor-compiled step functions included (wgangp: its penalty stays
    eager; svc: its after_step stays eager)."""
    assert_fast_path_matches_plain(tiny_config, tmp_path, regularizer, *ALL_FAST)


@pytest.mark.slow
def test_reduce_overhead_trains_what_the_plain_path_trains(tiny_config, tmp_path):
    """speed.compile=reduce-overhead (CUDA graphs of the step functions): a CPU captures no graph,
    so this checks that the steps trace into whole graphs and train as eager does, with the
    losses kept the way a graph's replay needs (speed.keeper). WN: its layers are normalized by
    one autograd.Function (regularizers/reparametrize.py), which the graphs must take in."""
    assert_fast_path_matches_plain(tiny_config, tmp_path, "wn", *ALL_FAST[:-1], "speed.compile=reduce-overhead")


def test_under_cuda_graphs_a_kept_loss_is_a_copy_and_otherwise_the_tensor_itself():
    loss = torch.ones((), requires_grad=True) * 2
    graphs, eager = keeper(SimpleNamespace(compile="reduce-overhead")), keeper(SimpleNamespace(compile=False))
    copied, detached = graphs(loss), eager(loss)
    assert not copied.requires_grad and copied.untyped_storage().data_ptr() != loss.untyped_storage().data_ptr()
    assert not detached.requires_grad and detached.untyped_storage().data_ptr() == loss.untyped_storage().data_ptr()


def test_compile_wraps_every_step_function_but_the_double_backward_penalty(tiny_config, tmp_path):
    # fullgraph=True (benchmark/speed.py) makes any graph break an error: compiled means one graph.
    trainer = Trainer(tiny_config("regularizer=wgangp", "speed.compile=default"), tmp_path)
    assert isinstance(trainer.generate, torch._dynamo.eval_frame.OptimizedModule)
    for name in ("d_loss", "g_loss", "after_step"):
        assert getattr(trainer, name)._torchdynamo_orig_callable is not None, name
    assert trainer.penalty == trainer.regularizer.penalty


@pytest.mark.parametrize("override, named", [
    ("speed.compile=fast", "speed.compile='fast': valid: false, default, reduce-overhead, max-autotune"),
    ("speed.tf32=maybe", "speed.tf32='maybe': must be true or false"),
])
def test_a_bad_speed_switch_is_named(tiny_config, tmp_path, override, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        Trainer(tiny_config(override), tmp_path)
