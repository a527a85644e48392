import pytest
import torch

from benchmark.trainer import Trainer
from regularizers import weight_layers

C = torch.tensor(0.0005).item()  # c as the float32 weights hold it


def clipped_trainer(tiny_config, tmp_path, monkeypatch, *overrides):
    trainer = Trainer(tiny_config("regularizer=wc", "regularizer.c=0.0005", "setting=D", *overrides), tmp_path)
    seen = []
    original = trainer.after_step

    def checked(D):
        original(D)
        weights = [layer.weight for _, layer in weight_layers(D)]
        biases = [layer.bias for _, layer in weight_layers(D) if layer.bias is not None]
        seen.append((max(w.abs().max().item() for w in weights), max(b.abs().max().item() for b in biases)))

    monkeypatch.setattr(trainer, "after_step", checked)
    trainer.fit()
    assert len(seen) == 2 * 5  # every D step of 2 updates with n_dis = 5
    return seen


def test_wc_weights_are_within_c_after_every_d_step_and_biases_are_free(tiny_config, tmp_path, monkeypatch):
    seen = clipped_trainer(tiny_config, tmp_path, monkeypatch)
    assert max(w for w, _ in seen) <= C
    # the constraint is active: without the projection Adam (lr 1e-3) would leave the box
    assert max(w for w, _ in seen) == C
    # the SN paper clips "the convolutional weight of each layer": biases move freely past c (0.002 in 10 Adam steps)
    assert max(b for _, b in seen) > 4 * C


@pytest.mark.parametrize("params", ["all"])
def test_wc_all_clips_biases_too(tiny_config, tmp_path, monkeypatch, params):
    seen = clipped_trainer(tiny_config, tmp_path, monkeypatch, f"regularizer.params={params}")
    assert max(max(w, b) for w, b in seen) <= C


def test_wc_refuses_an_unknown_params_choice():
    from regularizers import build
    with pytest.raises(ValueError, match="regularizer.params='bias': must be one of: weights, all"):
        build("wc", params="bias")
