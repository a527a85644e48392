import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark import bench


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
    printed = capsys.readouterr().out
    assert "variant fast" in printed and "wgangp" in printed


def test_flop_count_agrees_with_torch_and_with_the_formula():
    layer = torch.nn.Linear(30, 20)
    x = torch.randn(8, 30, requires_grad=True)
    with bench.CountFlops() as ours:
        layer(x).sum().backward()
    with FlopCounterMode(display=False) as theirs:
        layer(x).sum().backward()
    # forward 2*8*30*20; backward: the input's and the weight's gradients, as much again each
    assert ours.total == theirs.get_total_flops() == 3 * 2 * 8 * 30 * 20


@pytest.mark.parametrize("argv, message", [
    (["--regularizers", "sn,spectral"], "unknown regularizer(s) spectral"),
    (["--regularizers", "sn+spectral,combo"], "unknown regularizer(s) sn+spectral, combo"),
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
    assert {"r1", "dragan", "fn+wgangp", "sn+gangp"} <= set(names)
    cfg = bench.bench_config("fn+wgangp", bench.parse(["--model", "mlp"]), [])
    assert cfg.regularizer.name == "fn+wgangp" and cfg.loss.name == "wgan"
