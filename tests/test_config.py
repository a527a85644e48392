import pytest

import regularizers
from benchmark.config import ConfigError, compose_config, validate
from tests.helpers import run_cli

TABLE_1 = {  # SN paper, Table 1: lr, beta1, beta2, n_dis
    "A": (0.0001, 0.5, 0.9, 5), "B": (0.0001, 0.5, 0.999, 1), "C": (0.0002, 0.5, 0.999, 1),
    "D": (0.001, 0.5, 0.9, 5), "E": (0.001, 0.5, 0.999, 5), "F": (0.001, 0.9, 0.999, 5),
    "opt": (0.0002, 0.0, 0.9, 5),
}


@pytest.mark.parametrize("regularizer", sorted(regularizers.REGISTRY))
def test_every_regularizer_and_setting_composes_with_table_1_values(regularizer):
    for setting, values in TABLE_1.items():
        cfg = compose_config([f"regularizer={regularizer}", f"setting={setting}"])
        s = cfg.setting
        assert (s.lr, s.beta1, s.beta2, s.n_dis) == values
        assert cfg.regularizer.name == regularizer
        assert cfg.batch_size == 64 and cfg.z_dim == 128
        assert cfg.loss.name == (regularizers.REGISTRY[regularizer].default_loss or "ns")
        regularizers.build(**cfg.regularizer)  # every config key is an argument of the method


def test_paper_values_are_the_defaults():
    assert compose_config(["regularizer=wc"]).regularizer.c == 0.01
    assert compose_config(["regularizer=wgangp"]).regularizer.weight == 10
    assert compose_config(["regularizer=gangp"]).regularizer.weight == 10
    assert compose_config(["regularizer=sn"]).regularizer.n_power_iterations == 1
    assert compose_config([]).budget.iterations == 100_000


def test_regularizer_loss_pairing_yields_to_the_command_line():
    assert compose_config(["regularizer=wgangp"]).loss.name == "wgan"
    assert compose_config(["regularizer=wgangp", "loss=hinge"]).loss.name == "hinge"
    assert compose_config(["regularizer=sn", "loss=hinge"]).loss.name == "hinge"


def test_point_datasets_select_the_mlp():
    assert compose_config(["dataset=ring8"]).model.name == "mlp"
    assert compose_config(["dataset=grid25"]).model.name == "mlp"
    assert compose_config(["dataset=stl10"]).model.name == "cnn"
    assert compose_config(["dataset=stl10"]).dataset.size == 48


@pytest.mark.parametrize("override,key", [
    ("setting.lr=-0.1", "setting.lr"), ("setting.n_dis=0", "setting.n_dis"), ("batch_size=0", "batch_size"),
    ("device=tpu", "device"), ("setting.beta2=1.5", "setting.beta2"), ("budget.iterations=0", "budget.iterations"),
    ("model.width=-1", "model.width"), ("budget.checkpoint_every=3", "budget.checkpoint_every"),
])
def test_invalid_values_are_named_before_training(override, key):
    cfg = compose_config(["budget.log_every=2", override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_cuda_request_without_cuda_is_a_clear_error():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        validate(compose_config(["device=cuda"]))


@pytest.mark.slow
def test_cli_rejects_bad_input_with_a_clear_message(tmp_path):
    unknown = run_cli("regularizer=spectral", cwd=tmp_path)
    assert unknown.returncode != 0
    assert "spectral" in unknown.stderr and "sn" in unknown.stderr and "wgangp" in unknown.stderr
    unknown_setting = run_cli("setting=G", cwd=tmp_path)
    assert unknown_setting.returncode != 0 and "Available options" in unknown_setting.stderr
    bad = run_cli("setting.lr=-1", "setting.n_dis=0", "batch_size=0", "device=gpu", cwd=tmp_path)
    assert bad.returncode == 2
    for text in ("setting.lr=-1", "setting.n_dis=0", "batch_size=0", "device='gpu'", "auto, cpu, cuda"):
        assert text in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def test_speed_switches_are_defined_once_and_conf_agrees():
    """benchmark.contract.SPEED_SWITCHES is the one list: conf/config.yaml's `speed:` block has
    exactly its keys, and the run name leaves out exactly those that keep results."""
    from benchmark.contract import SPEED_KEYS_THAT_KEEP_RESULTS, SPEED_SWITCHES
    cfg = compose_config([], return_hydra_config=True)
    assert set(cfg.speed) == set(SPEED_SWITCHES)
    excluded = {k for k in cfg.hydra.job.config.override_dirname.exclude_keys if k.startswith("speed.")}
    assert excluded == set(SPEED_KEYS_THAT_KEEP_RESULTS)
