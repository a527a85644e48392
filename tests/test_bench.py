import json

import pytest

from benchmark import bench


def test_bench_times_regularizers_against_none_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--regularizers", "sn,wgangp", "--width", "0.0625", "--batch", "8", "--n-dis", "2",
                "--rounds", "2", "--warmup", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert list(report["results"]) == ["none", "sn", "wgangp"]
    assert report["results"]["none"]["ratio_generator_update"] == 1.0
    for row in report["results"].values():
        assert row["seconds_per_generator_update"] > 0 and len(row["samples"]) == 2
    printed = capsys.readouterr().out
    assert "ratio" in printed and "wgangp" in printed


def test_bench_rejects_unknown_regularizers():
    with pytest.raises(SystemExit) as err:
        bench.parse(["--regularizers", "sn,spectral"])
    assert err.value.code == 2
