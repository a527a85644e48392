import json

import pytest
import torch

import regularizers
from benchmark.checkpoint import CheckpointError
from benchmark.config import compose_config
from benchmark.contract import SCHEMA, read_jsonl
from benchmark.trainer import Trainer
from tests.helpers import TINY_IMAGES, run_cli


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def comparable(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


METHOD_OVERRIDES = {  # a knob whose state must survive the checkpoint
    "svc": ("regularizer=svc", "regularizer.every=3"),
    # a combination: SN's u, the lazy R1's step count and the penalty's noise, each part's state
    "sn+r1+dragan": ("regularizer=combo", "regularizer.parts=[sn,r1,dragan]", "+regularizer.options.r1.every=3"),
}


@pytest.mark.parametrize("regularizer", ["sn", "svc", "wgangp", "bn", "sn+r1+dragan"])
def test_resumed_run_continues_exactly_where_it_stopped(regularizer, tiny_config, tmp_path, monkeypatch):
    overrides = (*METHOD_OVERRIDES.get(regularizer, (f"regularizer={regularizer}",)), "setting=D",
                 "budget.iterations=4", "budget.log_every=1", "budget.checkpoint_every=2")
    straight = Trainer(tiny_config(*overrides), tmp_path / "straight")
    straight.fit()

    run_dir = tmp_path / "interrupted"
    killed = Trainer(tiny_config(*overrides), run_dir)
    original = killed.train_one_update

    def die_after_checkpoint():
        if killed.iteration == 3:  # the checkpoint of iteration 2 is written; iteration 3 is logged, not saved
            raise KeyboardInterrupt  # like a kill: no result.json, no new checkpoint
        original()

    monkeypatch.setattr(killed, "train_one_update", die_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert not (run_dir / "result.json").exists()
    assert [r["iteration"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3]

    resumed = Trainer(tiny_config(*overrides), run_dir)
    result = resumed.fit()
    assert result["status"] == "completed" and result["iteration"] == 4
    assert state_equal(resumed.G.state_dict(), straight.G.state_dict())
    assert state_equal(resumed.D.state_dict(), straight.D.state_dict())
    assert comparable(read_jsonl(run_dir / "metrics.jsonl")) == comparable(read_jsonl(tmp_path / "straight" / "metrics.jsonl"))


def test_same_seed_gives_the_same_result_numbers(tiny_config, tmp_path):
    results = [Trainer(tiny_config("regularizer=sn", "seed=3"), tmp_path / str(i)).fit() for i in range(2)]
    for key in ("final", "spectral_norms"):
        assert results[0][key] == results[1][key]
    other = Trainer(tiny_config("regularizer=sn", "seed=4"), tmp_path / "other").fit()
    assert other["final"] != results[0]["final"]


def test_nan_ends_the_run_as_diverged_with_the_iteration(tiny_config, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config("regularizer=none", "budget.iterations=6", "budget.log_every=3",
                                  "budget.checkpoint_every=3"), tmp_path)
    original = trainer.after_step

    def poison(D):
        original(D)
        if trainer.iteration == 4:  # during the 5th generator update
            with torch.no_grad():
                next(D.parameters()).fill_(float("nan"))

    monkeypatch.setattr(trainer, "after_step", poison)
    result = trainer.fit()
    assert result["status"] == "diverged"
    assert result["diverged_at"] == 5
    assert result["iteration"] == 6  # detected at the interval's logging point
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["status"] == "diverged"
    # the last good checkpoint is kept, not replaced by a NaN one
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 3


def test_a_crash_is_recorded_as_failed_and_raised(tiny_config, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config("regularizer=sn"), tmp_path)
    monkeypatch.setattr(trainer, "g_step", lambda: (_ for _ in ()).throw(RuntimeError("out of cheese")))
    with pytest.raises(RuntimeError, match="out of cheese"):
        trainer.fit()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "failed" and "out of cheese" in result["error"]


def test_a_checkpoint_of_another_config_is_refused_and_kept(tiny_config, tmp_path):
    Trainer(tiny_config("regularizer=sn"), tmp_path).fit()
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="regularizer.name: checkpoint 'sn' vs now 'wn'"):
        Trainer(tiny_config("regularizer=wn"), tmp_path).fit()
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_a_longer_budget_extends_a_finished_run(tiny_config, tmp_path):
    Trainer(tiny_config("regularizer=sn"), tmp_path).fit()
    result = Trainer(tiny_config("regularizer=sn", "budget.iterations=4"), tmp_path).fit()
    assert result["iteration"] == 4
    assert [r["iteration"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_2d_mixture_run_draws_a_scatter_plot(tmp_path):
    cfg = compose_config(["dataset=ring8", "regularizer=sn", "budget=smoke", "progress=false"])
    result = Trainer(cfg, tmp_path).fit()
    assert result["status"] == "completed"
    assert (tmp_path / "samples" / "final.png").stat().st_size > 1000


@pytest.mark.slow
def test_every_regularizer_trains_through_the_cli(image_root, tmp_path):
    names = ",".join(sorted(regularizers.REGISTRY))
    # with the smoke evaluation (its classifier is trained on first use, here on the small stand-in data)
    proc = run_cli("-m", f"regularizer={names}", "setting=D", "budget=smoke", *TINY_IMAGES,
                   f"data_root={image_root}", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in regularizers.REGISTRY:
        run_dir = next((tmp_path / "sweep").glob(f"*regularizer={name},*"))
        result = json.loads((run_dir / "result.json").read_text())
        assert result["schema"] == SCHEMA and result["status"] == "completed", (name, result.get("error"))
        assert result["config"]["regularizer"]["name"] == name
        assert result["iteration"] == 2 and result["seconds_per_generator_update"] > 0
        assert "fmnist_fid500_train" in result["metrics"]
        assert result["environment"]["packages"]["torch"] and result["environment"]["python"]
        log_rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "sigma_max" in r]
        assert set(result["spectral_norms"]) == set(log_rows[-1]["sigma_max"])
        assert (run_dir / "checkpoint.pt").exists() and (run_dir / ".hydra" / "config.yaml").exists()
        assert (run_dir / "samples" / "final.png").exists() and (run_dir / "spectra.json").exists()
    sn = json.loads(next((tmp_path / "sweep").glob("*regularizer=sn,*")).joinpath("result.json").read_text())
    assert all(abs(s - 1) < 0.2 for s in sn["spectral_norms"].values())  # one power iteration per update


@pytest.mark.slow
def test_cli_run_resumes_from_its_directory_and_refuses_a_corrupt_checkpoint(image_root, tmp_path):
    args = ("regularizer=sn", "budget=smoke", "eval=none", *TINY_IMAGES, f"data_root={image_root}")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = next(p for p in (tmp_path / "outputs").iterdir() if not p.name.startswith("."))  # not .finished/
    # named by what it computes (sorted overrides), not by where its data lives
    assert run_dir.name == "batch_size=16,budget=smoke,dataset=fashion_mnist,eval=none,model.width=0.0625,regularizer=sn"
    again = run_cli(*args, cwd=tmp_path)  # the same command finds its run finished
    assert again.returncode == 0 and "completed (already finished): 2/2" in again.stdout
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 2

    (run_dir / "result.json").unlink()  # as if killed before the end: the checkpoint must be read
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    corrupt = run_cli(*args, cwd=tmp_path)
    assert corrupt.returncode == 2
    assert "checkpoint.pt cannot be read" in corrupt.stderr and "left in place" in corrupt.stderr
    assert (run_dir / "checkpoint.pt").read_bytes() == b"not a checkpoint"


def test_opt_setting_decays_lr_linearly_to_zero_and_draws_g_batch_at_twice(tiny_config, tmp_path, monkeypatch):
    """The ResNet runs as Gulrajani et al.'s and the SN authors' code ran them (docs/paper.md, `opt`)."""
    trainer = Trainer(tiny_config("setting=opt", "budget.iterations=4"), tmp_path)
    lrs, g_batches = [], []
    original_g_loss, original_update = trainer.g_loss, trainer.train_one_update

    def g_loss(z):
        g_batches.append(len(z))
        return original_g_loss(z)

    def update():
        original_update()
        lrs.append({g["lr"] for opt in (trainer.opt_d, trainer.opt_g) for g in opt.param_groups})

    monkeypatch.setattr(trainer, "g_loss", g_loss)
    monkeypatch.setattr(trainer, "train_one_update", update)
    trainer.fit()
    batch = trainer.cfg.batch_size
    assert g_batches == [2 * batch] * 4
    assert all(len(s) == 1 for s in lrs)  # G and D share the schedule
    assert [s.pop() for s in lrs] == pytest.approx([2e-4 * (1 - k / 4) for k in range(4)])


def test_settings_a_to_f_keep_a_constant_lr_and_one_g_batch(tiny_config, tmp_path):
    for name in "ABCDEF":
        s = tiny_config(f"setting={name}").setting
        assert (s.lr_decay, s.g_batch_multiplier) == ("none", 1), name
