"""What each regularizer costs (SN paper, Figure 10), measured side by side in one process.

    python -m benchmark.bench [--regularizers none,sn,wgangp] [--width 1.0] [--device cuda] ...
    python -m benchmark.bench --variant plain=speed.fused_adam=false,speed.joint_d_call=false \
                              --variant compiled=speed.compile=default     # fast paths, side by side

Every regularizer trains the same model on the same random images with the
trainer's own d_step / g_step, under each variant (a set of config overrides;
by default one, the config's own speed switches). After warm-up (where
torch.compile compiles), rounds go over all (variant, regularizer) pairs in
turn, starting one further each round, so drift of the machine hits all of them
alike. The table gives the median seconds per generator update (n_dis D steps +
1 G step), per D step and per G step, each with its ratio to `none` under the
same variant, the ratio to the first variant, the FLOPs of one update (convs and
matmuls, forward and backward) with the throughput they imply, and the peak GPU
memory. A second table gives the ATen operations one D step, one G step and one
generator update dispatch (benchmark/op_count.py), the D step's extra over
`none` and how many of its operations are views (no kernel): at small batch a GPU pays per operation, so these predict its cost where
CPU seconds do not (docs/cost.md). FLOPs and operations are counted once per
method, eagerly, under the first variant; they do not depend on the machine or its load.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.errors import HydraException

import regularizers
from benchmark.config import compose_config, resolve_device
from benchmark.data import DATASETS
from benchmark.losses import LOSSES
from benchmark.models import MODELS
from benchmark.op_count import step_counts
from benchmark.results import SCHEMA, environment, write_json

# Timed by default beside the single methods: the SN paper's Table 7 pair, compare_gan's SN + GP and
# R3GAN's objective (R1 + R2 under the relativistic pairing loss; METHOD@LOSS names a loss other than
# the config's).
COMBINATIONS = ("fn+wgangp", "sn+gangp", "r1+r2@rpgan")
OPERATION_KEYS = ("ops_per_d_step", "ops_per_g_step", "ops_per_generator_update", "view_ops_per_d_step")


def bench_config(spec: str, args: argparse.Namespace, overrides: list[str]):
    regularizer, _, loss = spec.partition("@")
    method = ([f"regularizer={regularizers.COMBINATION}", f"regularizer.parts=[{regularizer.replace('+', ',')}]"]
              if regularizers.is_combination(regularizer) else [f"regularizer={regularizer}"])
    if loss:
        method.append(f"loss={loss}")
    base = [*method, f"model={args.model}", f"setting={args.setting}",
            f"setting.n_dis={args.n_dis}", f"batch_size={args.batch}", f"device={args.device}",
            "progress=false", "budget=smoke", "eval=none"]
    if MODELS[args.model].data == "images":
        base.append(f"model.width={args.width}")
    else:  # the config check pairs a points model with point data: the first such dataset
        base.append(f"dataset={next(d.name for d in DATASETS.values() if d.data == 'points')}")
    return compose_config(base + overrides)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_update(trainer, device: torch.device) -> tuple[float, float]:
    """Seconds of the n_dis D steps and of the G step of one generator update."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(trainer.cfg.setting.n_dis):
        trainer.d_step()
    synchronize(device)
    middle = time.perf_counter()
    trainer.g_step()
    synchronize(device)
    return middle - start, time.perf_counter() - middle


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    if not name or not overrides:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=KEY=VALUE[,KEY=VALUE...], "
                                         "e.g. compiled=speed.compile=default")
    return name, overrides.split(",")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regularizers", default=",".join([*sorted(regularizers.REGISTRY), *COMBINATIONS]),
                   help="comma-separated, a combination as its parts joined by + (sn+gangp), @LOSS after a "
                        "method for another loss (r1+r2@rpgan); `none` is always added as the reference")
    p.add_argument("--variant", action="append", type=parse_variant, default=[], metavar="NAME=OVERRIDES",
                   help="config overrides to time every regularizer under, comma-separated; repeatable "
                        "(default: one variant, `default`, with none)")
    p.add_argument("--model", default="cnn", choices=MODELS.names())
    p.add_argument("--width", type=float, default=None, help="channel multiplier (default: 1.0 on GPU, 0.5 on CPU)")
    p.add_argument("--size", type=int, default=32, help="image size (32: CIFAR-10, 48: STL-10)")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-dis", type=int, default=5)
    p.add_argument("--setting", default="A", help="Adam settings (lr matters little for time)")
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed generator updates per pair (default: 3 on GPU, where CUDA graphs record "
                        "on the first calls; 1 on CPU)")
    p.add_argument("--rounds", type=int, default=3, help="timed generator updates per pair, interleaved")
    p.add_argument("--out", default="outputs/bench/bench.json", help="where the JSON goes")
    args = p.parse_args(argv)
    methods = [spec.partition("@") for spec in args.regularizers.split(",")]
    unknown = [r for r, _, _ in methods if r == regularizers.COMBINATION or not regularizers.known(r)]
    if unknown:
        p.error(f"unknown regularizer(s) {', '.join(unknown)}; valid: {', '.join(sorted(regularizers.REGISTRY))}, "
                f"or several joined by + (sn+gangp)")
    unknown = [loss for _, at, loss in methods if at and loss not in LOSSES]
    if unknown:
        p.error(f"unknown loss(es) {', '.join(unknown)} after @; valid: {', '.join(LOSSES.names())}")
    names = [name for name, _ in args.variant]
    if len(set(names)) < len(names):
        p.error(f"--variant names must differ, got {', '.join(names)}")
    for name in ("batch", "n_dis", "rounds", "size", "channels"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def run(args: argparse.Namespace) -> dict:
    from benchmark.trainer import Trainer
    device = resolve_device(args.device)
    if args.width is None:
        args.width = 1.0 if device.type == "cuda" else 0.5
    if args.warmup is None:
        args.warmup = 3 if device.type == "cuda" else 1
    variants = dict(args.variant) or {"default": []}
    names = ["none"] + [r for r in args.regularizers.split(",") if r != "none"]
    pairs = [(v, name) for v in variants for name in names]
    generator = torch.Generator().manual_seed(0)
    if MODELS[args.model].data == "points":
        data = torch.randn(4096, 2, generator=generator)
    else:
        data = torch.randint(0, 256, (max(1024, args.batch), args.channels, args.size, args.size), dtype=torch.uint8,
                             generator=generator)

    trainers, peak, counts = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        first = next(iter(variants))
        for name in names:  # counted eagerly once, under the first variant, like FLOPs
            counted = Trainer(bench_config(name, args, [*variants[first], "speed.compile=false"]),
                              Path(tmp) / "counted" / name, data=data)
            counts[name] = step_counts(counted)
            del counted
        for pair in pairs:
            variant, name = pair
            trainers[pair] = Trainer(bench_config(name, args, variants[variant]), Path(tmp) / variant / name, data=data)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)
            for _ in range(args.warmup):
                time_update(trainers[pair], device)
            if device.type == "cuda":
                peak[pair] = torch.cuda.max_memory_allocated(device) - resident
        times = {pair: [] for pair in pairs}
        for r in range(args.rounds):
            for pair in pairs[r % len(pairs):] + pairs[:r % len(pairs)]:  # rotate: no one is always first
                times[pair].append(time_update(trainers[pair], device))

    results = {variant: {} for variant in variants}
    for variant, name in pairs:
        t = times[variant, name]
        total = statistics.median(d + g for d, g in t)
        c = counts[name]
        results[variant][name] = {
            "seconds_per_generator_update": total,
            "seconds_per_d_step": statistics.median(d for d, _ in t) / args.n_dis,
            "seconds_per_g_step": statistics.median(g for _, g in t),
            "gflop_per_generator_update": c["flops_per_generator_update"] / 1e9,
            "tflop_per_second": c["flops_per_generator_update"] / total / 1e12,
            "peak_memory_bytes": peak.get((variant, name)),
            **{key: c[key] for key in OPERATION_KEYS},
            "ops_per_d_step_over_none": c["ops_per_d_step"] - counts["none"]["ops_per_d_step"],
            "ops_per_g_step_over_none": c["ops_per_g_step"] - counts["none"]["ops_per_g_step"],
            "d_step_ops_by_name": c["d_step_ops_by_name"],
            "samples": [list(sample) for sample in t],
        }
    for rows in results.values():
        for name, row in rows.items():
            for key in ("seconds_per_generator_update", "seconds_per_d_step", "seconds_per_g_step"):
                row[key.replace("seconds_per", "ratio")] = row[key] / rows["none"][key]
            row["ratio_to_first_variant"] = (row["seconds_per_generator_update"]
                                             / results[first][name]["seconds_per_generator_update"])
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "variant")}
    return {"schema": SCHEMA, "settings": settings, "variants": variants, "results": results,
            "environment": environment(device)}


def table(report: dict) -> str:
    env, s = report["environment"], report["settings"]
    first = next(iter(report["variants"]))
    lines = [f"{s['model']} width {s['width']}, batch {s['batch']}, n_dis {s['n_dis']}, {s['size']}px, "
             f"device {env['device']} ({env['device_name']}), median of {s['rounds']} interleaved updates"]
    for variant, rows in report["results"].items():
        lines += ["", f"variant {variant}: {', '.join(report['variants'][variant]) or 'the config defaults'}",
                  f"{'regularizer':<12}{'s/G-update':>12}{'ratio':>8}{'s/D-step':>11}{'ratio':>8}"
                  f"{'s/G-step':>11}{'ratio':>8}{'vs ' + first:>14}{'GFLOP':>8}{'TFLOP/s':>9}{'peak MiB':>10}"]
        for name, r in rows.items():
            mem = f"{r['peak_memory_bytes'] / 2**20:.0f}" if r["peak_memory_bytes"] is not None else "n/a"
            lines.append(f"{name:<12}{r['seconds_per_generator_update']:>12.4f}{r['ratio_generator_update']:>8.3f}"
                         f"{r['seconds_per_d_step']:>11.4f}{r['ratio_d_step']:>8.3f}"
                         f"{r['seconds_per_g_step']:>11.4f}{r['ratio_g_step']:>8.3f}"
                         f"{r['ratio_to_first_variant']:>14.3f}{r['gflop_per_generator_update']:>8.1f}"
                         f"{r['tflop_per_second']:>9.3f}{mem:>10}")
    rows = report["results"][first]
    lines += ["", f"ATen operations dispatched (counted once, eagerly, under variant {first}; +: over none)",
              f"{'regularizer':<12}{'ops/D-step':>11}{'+':>6}{'views':>7}{'ops/G-step':>11}{'+':>6}"
              f"{'ops/G-update':>13}{'GFLOP':>8}"]
    for name, r in rows.items():
        lines.append(f"{name:<12}{r['ops_per_d_step']:>11.0f}{r['ops_per_d_step_over_none']:>+6.0f}"
                     f"{r['view_ops_per_d_step']:>7.0f}{r['ops_per_g_step']:>11.0f}{r['ops_per_g_step_over_none']:>+6.0f}"
                     f"{r['ops_per_generator_update']:>13.0f}{r['gflop_per_generator_update']:>8.1f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse(argv)
    try:
        report = run(args)
    except (ValueError, HydraException) as err:  # bad device or override, a model that does not fit the size
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(table(report))
    write_json(Path(args.out), report)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
