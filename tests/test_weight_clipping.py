import torch

from benchmark.trainer import Trainer


def test_wc_weights_are_within_c_after_every_d_step(tiny_config, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config("regularizer=wc", "regularizer.c=0.005", "setting=D"), tmp_path)
    seen = []
    original = trainer.after_step

    def checked(D):
        original(D)
        seen.append(max(p.abs().max().item() for p in D.parameters()))

    monkeypatch.setattr(trainer, "after_step", checked)
    trainer.fit()
    assert len(seen) == 2 * 5  # every D step of 2 updates with n_dis = 5
    assert max(seen) <= 0.005
    # the constraint is active: without the projection Adam (lr 1e-3) would leave the box
    assert max(seen) == torch.tensor(0.005).item()
