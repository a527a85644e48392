"""Adding a regularizer, a metric kind, a dataset or a loss is one registry entry plus its conf
(docs/extending.md): a throwaway one of each, registered here by the public call the built-ins
use and configured from a folder on Hydra's search path, trains, is evaluated and is analysed
with no other edit."""
import math
import re

import pytest
import torch

from analysis.collect import collect
from analysis.compare import Comparison
from benchmark import contract
from benchmark.config import compose_config, validate
from benchmark.data import DATASETS, mixture
from benchmark.evaluation import COMPUTE
from benchmark.losses import LOSSES, Loss
from benchmark.trainer import Trainer
from regularizers import REGISTRY, Regularizer, weight_layers


class WeightDecay(Regularizer):
    """1e-3 * the sum of D's squared weights: a penalty on D's weights, as orthonormal's is."""
    name = "l2"
    kind = "weight penalty"

    def penalty(self, D, real, fake):
        return 1e-3 * sum((layer.weight ** 2).sum() for _, layer in weight_layers(D))

CONF = {  # what conf/dataset/ring3.yaml and conf/loss/lsgan.yaml would hold
    "dataset/ring3.yaml": "defaults:\n  - override /eval@_global_.eval: mixture\n"
                          "  - override /model@_global_.model: mlp\n"
                          "name: ring3\nstd: 0.02\nnum_samples: 2000\nseed: 0\n",
    "loss/lsgan.yaml": "name: lsgan\n",
    "regularizer/l2.yaml": "name: l2\n",
}


def _triangle() -> torch.Tensor:  # 3 modes on a circle of radius 2
    angles = torch.arange(3, dtype=torch.float64) * (2 * math.pi / 3)
    return (2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


@pytest.fixture
def plugged(tmp_path):
    conf = tmp_path / "conf"
    for name, text in CONF.items():
        (conf / name).parent.mkdir(parents=True, exist_ok=True)
        (conf / name).write_text(text)
    # the entries: a regularizer, a dataset, a loss (least squares, Mao et al. 2017) and a metric kind
    REGISTRY.add(WeightDecay)
    DATASETS.add(mixture("ring3", _triangle))
    LOSSES.add(Loss("lsgan", lambda real, fake: ((real - 1) ** 2).mean() / 2 + (fake ** 2).mean() / 2,
                    lambda fake: ((fake - 1) ** 2).mean() / 2))
    contract.METRIC_KINDS.add(contract.MetricKind(
        name="spread", pattern=re.compile(r"^spread(?P<n>\d+k?)$"), form="spread<N>", space="points",
        columns=(contract.Column(key="spread", suffix="", higher_is_better=True, role="coverage", worst=0.0,
                                 description="std of generated points"),)))
    COMPUTE.add(lambda ev, p, fake, space: {p.name: float(fake["points"][:p.num_fake].std(dim=0).mean())},
                name="spread")
    try:
        yield [f"hydra.searchpath=[file://{conf}]"]
    finally:
        REGISTRY.remove("l2")
        DATASETS.remove("ring3")
        LOSSES.remove("lsgan")
        contract.METRIC_KINDS.remove("spread")
        COMPUTE.remove("spread")


def test_a_new_regularizer_dataset_loss_and_metric_kind_run_through_a_tiny_run_and_the_analysis(plugged, tmp_path):
    cfg = compose_config([*plugged, "dataset=ring3", "loss=lsgan", "regularizer=l2", "budget=smoke",
                          "progress=false", "eval.metrics=[mixture1k,spread500]"])
    assert cfg.model.name == "mlp"  # the dataset's conf picks the model that fits its points
    validate(cfg)
    result = Trainer(cfg, tmp_path / "run").fit()
    assert result["status"] == "completed"
    assert set(result["metrics"]) >= {"mixture1k_modes", "spread500"} and result["metrics"]["spread500"] > 0
    assert result["metrics"]["mixture1k_modes"] <= 3  # the new dataset's own modes
    comparison = Comparison(*collect([tmp_path]))
    assert "spread500" in comparison.metrics() and comparison.runs.loss.tolist() == ["lsgan"]
    assert comparison.runs.regularizer.tolist() == ["l2"]
