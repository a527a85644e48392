import inspect

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import regularizers
from benchmark.config import CONF, compose_config, run_name
from regularizers import Regularizer
from regularizers.combination import Combination


def small_d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, 1, 1), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(4 * 5 * 5, 1))


def test_a_combinations_penalty_is_the_sum_of_its_parts():
    real, fake = torch.randn(4, 2, 5, 5), torch.randn(4, 2, 5, 5)
    combo = regularizers.build("combo", parts=["ortho", "wgangp", "r1"])
    D = combo.attach(small_d())
    combo.generator = torch.Generator().manual_seed(7)
    total = combo.penalty(D, real, fake)
    noise = torch.Generator().manual_seed(7)  # the parts draw from the one generator, in order
    parts = []
    for name in ("ortho", "wgangp", "r1"):
        part = regularizers.build(name)
        part.generator = noise
        parts.append(part.penalty(D, real, fake))
    assert total.item() == pytest.approx(sum(parts).item(), rel=1e-6)
    assert all(p.item() > 0 for p in parts)


def test_a_combination_runs_each_parts_hooks_in_order_and_keeps_each_parts_state():
    calls = []

    class Recorder(Regularizer):
        def __init__(self, name):
            self.name, self.steps = name, 0

        def attach(self, D):
            calls.append(("attach", self.name))
            return D

        def after_step(self, D):
            calls.append(("after_step", self.name))
            self.steps += 1

        def state_dict(self):
            return {"steps": self.steps}

        def load_state_dict(self, state):
            self.steps = state["steps"]

    combo = Combination([Recorder("a"), Recorder("b")])
    combo.attach(nn.Linear(2, 1))
    combo.after_step(None)
    assert calls == [("attach", "a"), ("attach", "b"), ("after_step", "a"), ("after_step", "b")]
    assert combo.state_dict() == {"a": {"steps": 1}, "b": {"steps": 1}}
    other = Combination([Recorder("a"), Recorder("b")])
    other.load_state_dict({"a": {"steps": 5}, "b": {"steps": 2}})
    assert [p.steps for p in other.parts] == [5, 2]


def test_sn_and_a_penalty_both_act_the_trainers_fast_paths_follow_the_parts():
    combo = regularizers.build("sn+gangp")
    D = combo.attach(small_d())
    assert all(hasattr(layer, "parametrizations") for _, layer in regularizers.weight_layers(D))
    assert combo.compile_penalty is False and combo.default_loss == "ns"
    combo = regularizers.build("combo", parts=["fn", "wgangp"], options={"wgangp": {"weight": 1.0}})
    assert combo.parts[1].weight == 1.0 and combo.default_loss == "wgan" and combo.label == "fn+wgangp"


@pytest.mark.parametrize("parts, reason", [
    (["sn", "wn"], "both reparametrize every weight"),
    (["bn", "wgangp"], "per-sample input gradients"),
    (["bn", "ln"], "same normalization slots"),
    (["sn", "svc"], "the projection's bound is lost"),
    (["wc", "fn"], "the projection's bound is lost"),
    (["wgangp", "gangp"], "different losses"),
    (["sn", "sn"], "sn given twice"),
    (["sn"], "at least two methods"),
    ([], "at least two methods"),
    (["none", "sn"], "none adds nothing"),
    (["sn", "combo"], "unknown method"),
])
def test_nonsense_combinations_are_refused_with_the_reason(parts, reason):
    with pytest.raises(ValueError, match=reason) as err:
        regularizers.build("combo", parts=parts)
    assert "regularizer.parts" in str(err.value)


def test_combo_config_names_the_run_by_its_parts_and_pairs_the_loss():
    cfg = compose_config(["regularizer=combo", "regularizer.parts=[fn,wgangp]"], return_hydra_config=True)
    assert cfg.regularizer.name == "fn+wgangp" and cfg.loss.name == "wgan"
    assert run_name(cfg.hydra.job.override_dirname) == "regularizer=fn+wgangp"
    assert compose_config(["regularizer=combo", "regularizer.parts=[sn,gangp]"]).loss.name == "ns"
    assert compose_config(["regularizer=combo", "regularizer.parts=[fn,wgangp]", "loss=hinge"]).loss.name == "hinge"
    assert run_name("dataset=ring8,regularizer.parts=[sn, gangp],regularizer=combo,seed=1") == \
        "dataset=ring8,regularizer=sn+gangp,seed=1"
    cfg = compose_config(["regularizer=combo", "regularizer.parts=[sn,r1]", "+regularizer.options.r1.every=4"])
    options = {k: v for k, v in OmegaConf.to_container(cfg.regularizer, resolve=True).items() if k != "name"}
    assert regularizers.build(cfg.regularizer.name, **options).parts[1].every == 4


@pytest.mark.parametrize("name", sorted(regularizers.REGISTRY))
def test_each_methods_config_values_are_its_defaults_so_a_part_behaves_as_the_method_alone(name):
    """A combination's part takes the method's constructor defaults: they must be its config file's values."""
    values = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(CONF / "regularizer" / f"{name}.yaml")).items()
              if k not in ("name", "defaults")}
    defaults = {k: p.default for k, p in inspect.signature(regularizers.REGISTRY[name]).parameters.items()}
    assert values == defaults


def test_every_method_says_its_kind_the_combination_checks_by():
    from regularizers.base import KINDS
    kinds = {name: cls.kind for name, cls in regularizers.REGISTRY.items()}
    assert all(kind in KINDS for kind in kinds.values())
    assert [name for name, kind in kinds.items() if kind == "none"] == ["none"]
    assert {name for name, kind in kinds.items() if kind == "gradient penalty"} == {"wgangp", "gangp", "r1", "r2",
                                                                                   "dragan"}
