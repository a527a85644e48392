"""Fetch, once, everything evaluation needs, on a machine with internet (a cluster's
login node), so that runs on compute nodes without it work with the same config:

    python -m benchmark.prefetch [--datasets cifar10,stl10] [--eval paper,full] [key=value ...]

Downloads the datasets into data_root (torchvision) and torch-fidelity's
Inception weights into torch hub's cache ($TORCH_HOME), trains the
Fashion-MNIST classifier if that dataset is asked for, and computes the
real-data statistics of every metric of the named eval presets into
eval.cache_root. Extra key=value arguments are Hydra overrides (data_root=...,
eval.cache_root=...). Whatever is already there is reused.
"""
from __future__ import annotations

import argparse
import sys

import torch

from benchmark.config import CONF, compose_config, resolve_device
from benchmark.data import DATASETS, DatasetError, load_dataset
from benchmark.evaluation import EvaluationSetupError, Evaluator

EVAL_PRESETS = sorted(p.stem for p in (CONF / "eval").glob("*.yaml"))


def main(argv=None) -> list[str]:
    p = argparse.ArgumentParser(prog="python -m benchmark.prefetch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="cifar10,stl10", help=f"comma-separated, of: {DATASETS.valid()}")
    p.add_argument("--eval", default="paper,full", help=f"comma-separated eval presets, of: {', '.join(EVAL_PRESETS)} "
                                                        "(fashion_mnist always uses fmnist)")
    p.add_argument("--device", default="auto")
    args, overrides = p.parse_known_args(argv)
    datasets, presets = args.datasets.split(","), args.eval.split(",")
    for value, valid, what in ((datasets, DATASETS.names(), "dataset"), (presets, EVAL_PRESETS, "eval preset")):
        unknown = [v for v in value if v not in valid]
        if unknown:
            p.error(f"unknown {what}(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    device = resolve_device(args.device)
    done = []
    try:
        for dataset in datasets:
            for preset in (["fmnist"] if dataset == "fashion_mnist" else presets):
                cfg = compose_config([f"dataset={dataset}", f"eval={preset}", "dataset.download=true", *overrides])
                if DATASETS[cfg.dataset.name].generated:
                    print(f"{dataset}: generated data, nothing to fetch")
                    break
                train = load_dataset(cfg.dataset, cfg.data_root).to(device)
                evaluator = Evaluator(cfg.eval, cfg.dataset, train, device, cfg.data_root, progress=True)
                for name in evaluator.prefetch():
                    done.append(f"{dataset}:{name}")
                    print(f"{dataset}: real statistics for {name} are in {cfg.eval.cache_root}")
                del train, evaluator
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    except (DatasetError, EvaluationSetupError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return done


if __name__ == "__main__":
    main()
