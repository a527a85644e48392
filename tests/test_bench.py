import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark import bench
from benchmark.op_count import CountOps


def test_bench_times_regularizers_against_none_under_each_variant_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--regularizers", "sn,wgangp", "--width", "0.0625", "--batch", "8", "--n-dis", "2",
                "--rounds", "2", "--warmup", "1", "--out", str(out),
                "--variant", "plain=speed.fused_adam=false,speed.joint_d_call=false",
                "--variant", "fast=speed.fused_adam=true"])
    report = json.loads(out.read_text())
    assert report["variants"] == {"plain": ["speed.fused_adam=false", "speed.joint_d_call=false"],
                                  "fast": ["speed.fused_adam=true"]}
    for variant, rows in report["results"].items():
        assert list(rows) == ["none", "sn", "wgangp"]
        assert rows["none"]["ratio_generator_update"] == 1.0
        for row in rows.values():
            assert row["seconds_per_generator_update"] > 0 and len(row["samples"]) == 2
            assert row["gflop_per_generator_update"] > 0
            if variant == "plain":
                assert row["ratio_to_first_variant"] == 1.0
    # the penalty's extra D passes (forward, double backward) are counted
    plain = report["results"]["plain"]
    assert plain["wgangp"]["gflop_per_generator_update"] > 1.3 * plain["none"]["gflop_per_generator_update"]
    # operations: counted once (the same under every variant), per update n_dis D steps and one G step
    for name, row in plain.items():
        assert row["ops_per_generator_update"] == 2 * row["ops_per_d_step"] + row["ops_per_g_step"]
        assert row["ops_per_d_step_over_none"] == row["ops_per_d_step"] - plain["none"]["ops_per_d_step"]
        assert row["ops_per_d_step"] == sum(row["d_step_ops_by_name"].values())
        assert row["ops_per_d_step"] == report["results"]["fast"][name]["ops_per_d_step"]
    assert plain["sn"]["ops_per_d_step_over_none"] > 0 and plain["sn"]["d_step_ops_by_name"]["mv"] > 0
    printed = capsys.readouterr().out
    assert "variant fast" in printed and "wgangp" in printed and "ATen operations" in printed


def test_flop_count_agrees_with_torch_and_with_the_formula():
    layer = torch.nn.Linear(30, 20)
    x = torch.randn(8, 30, requires_grad=True)
    with CountOps() as ours:
        layer(x).sum().backward()
    with FlopCounterMode(display=False) as theirs:
        layer(x).sum().backward()
    # forward 2*8*30*20; backward: the input's and the weight's gradients, as much again each
    assert ours.flops == theirs.get_total_flops() == 3 * 2 * 8 * 30 * 20


def test_operation_count_names_every_aten_operation_once():
    x = torch.randn(4, 3)
    with CountOps() as counted:
        y = (x * 2).relu().t()  # three operations; a view counts as one
        torch._foreach_add([x, y], 1.0)  # one operation for the whole list
    assert dict(counted.ops) == {"mul": 1, "relu": 1, "t": 1, "_foreach_add": 1}
    assert counted.total == 4 and counted.views == 1


@pytest.mark.parametrize("argv, message", [
    (["--regularizers", "sn,spectral"], "unknown regularizer(s) spectral"),
    (["--regularizers", "sn+spectral,combo"], "unknown regularizer(s) sn+spectral, combo"),
    (["--regularizers", "r1+r2@relativistic"], "unknown loss(es) relativistic after @; valid: ns, hinge, wgan, rpgan"),
    (["--variant", "compiled"], "expected NAME=KEY=VALUE"),
    (["--variant", "a=speed.compile=default", "--variant", "a=speed.tf32=true"], "--variant names must differ"),
])
def test_bench_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        bench.parse(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_names_a_bad_override(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        bench.main(["--regularizers", "sn", "--variant", "x=speed.compile=fast", "--width", "0.0625",
                    "--batch", "8", "--out", str(tmp_path / "b.json")])
    assert err.value.code == 2
    assert "speed.compile='fast'" in capsys.readouterr().err


def test_bench_times_new_methods_and_combinations_by_default():
    names = bench.parse([]).regularizers.split(",")
    assert {"r1", "dragan", "gn", "bssn", "lecam", "fn+wgangp", "sn+gangp", "r1+r2@rpgan"} <= set(names)
    cfg = bench.bench_config("fn+wgangp", bench.parse(["--model", "mlp"]), [])
    assert cfg.regularizer.name == "fn+wgangp" and cfg.loss.name == "wgan"
    cfg = bench.bench_config("r1+r2@rpgan", bench.parse(["--model", "mlp"]), [])  # R3GAN's objective
    assert cfg.regularizer.name == "r1+r2" and cfg.loss.name == "rpgan"
