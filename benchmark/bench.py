"""What each regularizer costs (SN paper, Figure 10), measured side by side in one process.

    python -m benchmark.bench [--regularizers none,sn,wgangp] [--width 1.0] [--device cuda] ...

Every regularizer trains the same model on the same random images with the
trainer's own d_step / g_step. After warm-up, rounds go over the regularizers
in turn, starting one further each round (so drift of the machine hits all of them alike); the table gives the
median seconds per generator update (n_dis D steps + 1 G step), per D step and
per G step, each with its ratio to `none`, and the peak GPU memory.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import regularizers
from benchmark.config import compose_config, resolve_device
from benchmark.results import SCHEMA, environment, write_json


def bench_config(regularizer: str, args: argparse.Namespace):
    overrides = [f"regularizer={regularizer}", f"model={args.model}", f"setting={args.setting}",
                 f"setting.n_dis={args.n_dis}", f"batch_size={args.batch}", f"device={args.device}",
                 "progress=false", "budget=smoke", "eval=none"]
    if args.model != "mlp":
        overrides.append(f"model.width={args.width}")
    return compose_config(overrides)


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


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regularizers", default=",".join(sorted(regularizers.REGISTRY)),
                   help="comma-separated; `none` is always added as the reference")
    p.add_argument("--model", default="cnn", choices=["cnn", "resnet", "mlp"])
    p.add_argument("--width", type=float, default=None, help="channel multiplier (default: 1.0 on GPU, 0.5 on CPU)")
    p.add_argument("--size", type=int, default=32, help="image size (32: CIFAR-10, 48: STL-10)")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-dis", type=int, default=5)
    p.add_argument("--setting", default="A", help="Adam settings (lr matters little for time)")
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=1, help="untimed generator updates per regularizer")
    p.add_argument("--rounds", type=int, default=3, help="timed generator updates per regularizer, interleaved")
    p.add_argument("--out", default="outputs/bench/bench.json", help="where the JSON goes")
    args = p.parse_args(argv)
    unknown = [r for r in args.regularizers.split(",") if r not in regularizers.REGISTRY]
    if unknown:
        p.error(f"unknown regularizer(s) {', '.join(unknown)}; valid: {', '.join(sorted(regularizers.REGISTRY))}")
    for name in ("batch", "n_dis", "rounds", "size", "channels"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def run(args: argparse.Namespace) -> dict:
    from benchmark.trainer import Trainer
    device = resolve_device(args.device)
    if args.width is None:
        args.width = 1.0 if device.type == "cuda" else 0.5
    names = ["none"] + [r for r in args.regularizers.split(",") if r != "none"]
    shape = (args.channels, args.size, args.size) if args.model != "mlp" else (2,)
    generator = torch.Generator().manual_seed(0)
    if args.model == "mlp":
        data = torch.randn(4096, 2, generator=generator)
    else:
        data = torch.randint(0, 256, (max(1024, args.batch), *shape), dtype=torch.uint8, generator=generator)

    trainers, peak = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            trainers[name] = Trainer(bench_config(name, args), Path(tmp) / name, data=data)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)
            for _ in range(args.warmup):
                time_update(trainers[name], device)
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated(device) - resident
        times = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate: no one is always first
                times[name].append(time_update(trainers[name], device))

    rows = {}
    for name in names:
        d = statistics.median(t[0] for t in times[name])
        g = statistics.median(t[1] for t in times[name])
        total = statistics.median(t[0] + t[1] for t in times[name])
        rows[name] = {"seconds_per_generator_update": total, "seconds_per_d_step": d / args.n_dis,
                      "seconds_per_g_step": g, "peak_memory_bytes": peak.get(name),
                      "samples": [list(t) for t in times[name]]}
    for name in names:
        for key in ("seconds_per_generator_update", "seconds_per_d_step", "seconds_per_g_step"):
            rows[name][key.replace("seconds_per", "ratio")] = rows[name][key] / rows["none"][key]
    return {"schema": SCHEMA, "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "results": rows, "environment": environment(device)}


def table(report: dict) -> str:
    env, s = report["environment"], report["settings"]
    lines = [f"{s['model']} width {s['width']}, batch {s['batch']}, n_dis {s['n_dis']}, {s['size']}px, "
             f"device {env['device']} ({env['device_name']}), median of {s['rounds']} interleaved updates",
             f"{'regularizer':<12}{'s/G-update':>12}{'ratio':>8}{'s/D-step':>11}{'ratio':>8}"
             f"{'s/G-step':>11}{'ratio':>8}{'peak MiB':>10}"]
    for name, r in report["results"].items():
        mem = f"{r['peak_memory_bytes'] / 2**20:.0f}" if r["peak_memory_bytes"] is not None else "n/a"
        lines.append(f"{name:<12}{r['seconds_per_generator_update']:>12.4f}{r['ratio_generator_update']:>8.3f}"
                     f"{r['seconds_per_d_step']:>11.4f}{r['ratio_d_step']:>8.3f}"
                     f"{r['seconds_per_g_step']:>11.4f}{r['ratio_g_step']:>8.3f}{mem:>10}")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse(argv)
    try:
        report = run(args)
    except ValueError as err:  # bad device, a model that does not fit the size, ...
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(table(report))
    write_json(Path(args.out), report)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
