"""Ship a sweep as a reference: its records (not its weights) and the report made from them.

    python -m analysis.ship multirun/reference_2d --name reference_2d --command "make sweep EXPERIMENT=reference_2d"

writes results/<name>/:
    runs/<run>/   result.json, metrics.jsonl, spectra.json: every finished run (completed, diverged or
                  failed); samples/final.png (a 32-colour copy) only for the runs the report draws (the
                  others' images are most of a reference's bytes and nothing reads them); no checkpoint,
                  no TensorBoard files
    report/       what `make figures SWEEP=results/<name>` writes, text and PNG (the PDFs are left out)
    bench.json    with --bench: make bench's side-by-side timings of the reference's model, which the
                  report's cost verdict reads instead of training times from machines that differ
                  (kept when a later shipment gives none)
    README.md     the commands, the commits and the machine the runs came from, what they cost, the size

Records are copied as they are, so the report regenerated from them (tests/test_reference.py, or
`make figures SWEEP=results/<name>`) is the shipped one. Runs that have not finished are listed, not
shipped: shipping again once the sweep has gone further adds them.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
from collections import Counter
from pathlib import Path

from PIL import Image

from analysis.collect import (
    SchemaError,
    UnreadableRunError,
    collect,
    find_runs,
    read_bench,
    read_json,
    write_atomic_text,
)
from analysis.compare import Comparison
from analysis.report import OWN_BENCH, bench_shape, make_report
from benchmark.contract import FINAL_SAMPLES, METRICS_FILE, RESULT_FILE, SPECTRA_FILE

RESULTS = Path("results")
RECORDS = (RESULT_FILE, METRICS_FILE, SPECTRA_FILE)
SAMPLE_COLOURS = 32  # a 2-D scatter or an 8x8 grid of small images keeps its look at a third of the bytes


def _copy_run(run_dir: Path, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for name in RECORDS:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, to / name)
    if (run_dir / FINAL_SAMPLES).is_file():
        (to / FINAL_SAMPLES).parent.mkdir(exist_ok=True)
        Image.open(run_dir / FINAL_SAMPLES).convert("RGB").quantize(SAMPLE_COLOURS).save(to / FINAL_SAMPLES,
                                                                                          optimize=True)


def _keep_drawn_samples_only(out: Path, at: int | None) -> int:
    """Remove the sample images of the runs the report does not draw; returns how many are kept."""
    comparison = Comparison(*collect([out]), at=at)
    drawn = {Path(run).name for chosen in comparison.drawn_runs().values() for run in chosen.values()}
    kept = 0
    for samples in (out / "runs").glob(f"*/{Path(FINAL_SAMPLES).parent}"):
        if samples.parent.name in drawn:
            kept += 1
        else:
            shutil.rmtree(samples)
    return kept


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_provenance(path: Path) -> str:
    report = read_json(path)
    s, env = report["settings"], report["environment"]
    return (f"- cost measured side by side: [{OWN_BENCH}]({OWN_BENCH}) (make bench, {bench_shape(s)}, on "
            f"{env.get('device_name')} with {env.get('torch_threads')} torch thread(s), commit "
            f"{str(env.get('git_commit'))[:7]}); the report's cost verdict reads it")


def provenance(results: list[dict], unfinished: list[str], commands: list[str], notes: list[str], name: str,
               size: int | None = None, bench: Path | None = None, at: int | None = None,
               samples_kept: int | None = None) -> list[str]:
    envs = [r.get("environment") or {} for r in results]
    commits = Counter(e.get("git_commit") for e in envs)
    # the CPU's kernel set: on another one (AVX2 against AVX-512) a CPU run follows another trajectory
    hosts = Counter(f"{e.get('host')} ({e.get('device_name')}, "
                    f"{(e.get('cpu') or {}).get('torch_cpu_capability') or 'CPU kernels not recorded'}, "
                    f"{e.get('torch_threads')} torch thread(s))" for e in envs)
    packages = Counter(", ".join(f"{k} {v}" for k, v in sorted((e.get("packages") or {}).items())) for e in envs)
    statuses = Counter(r["status"] for r in results)
    seconds = sum(r.get("train_seconds") or 0.0 for r in results)
    md = [f"# Reference: {name}", "",
          f"{len(results)} finished runs (" + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")"
          + (f"; {len(unfinished)} not finished when shipped, left out" if unfinished else "") + ".",
          "", "Report: [report/report.md](report/report.md); paper claims: [report/claims.md](report/claims.md).",
          "", "## Commands", "", "```"] + commands + [f"python -m analysis.ship <sweep> --name {name}",
                                                      f"make figures SWEEP=results/{name}" + (f' ARGS="--at {at}"' if at else "")
                                                      + "   # reproduces report/",
                                                      "```", "", "## Where and at what cost", ""]
    md += [f"- commit {c}: {n} runs" for c, n in commits.most_common()]
    md += [f"- machine {h}: {n} runs" for h, n in hosts.most_common()]
    md += [f"- packages {p}: {n} runs" for p, n in packages.most_common()]
    md += [f"- shipped from a machine with: {_cpu_model()}",
           f"- training time, summed over runs: {seconds / 3600:.2f} core-hours (each run on one torch thread)"]
    if bench is not None:
        md.append(bench_provenance(bench))
    if size is not None:
        md.append(f"- this folder: about {size / 1e6:.1f} MB")
    if samples_kept is not None:
        md.append(f"- sample images: those of the {samples_kept} runs the report draws; the other runs' "
                  f"samples/final.png were left out (their records are whole)")
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if unfinished:
        md += ["", "## Not finished when shipped", ""] + [f"- `{u}`" for u in unfinished]
    return md


def ship(sweep: Path, name: str, commands: list[str], notes: list[str] = (), results_root: Path = RESULTS,
         bench: Path | None = None, at: int | None = None) -> Path:
    """`results_root` relative to the repository root, as `make figures SWEEP=results/<name>` names it,
    so that the report names its input the same way. `bench`: make bench's JSON, shipped as the
    reference's own (read_bench checks it first). `at`: the report scores every run at that generator
    update (a reference whose runs have several budgets: make figures ARGS="--at N")."""
    out = results_root / name
    if bench is not None:
        read_bench(bench)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic_text(out / OWN_BENCH, Path(bench).read_text())
    runs_out = out / "runs"
    if runs_out.exists():
        shutil.rmtree(runs_out)  # a reshipment replaces the records whole (the sweep may have gone further)
    results, unfinished = [], []
    for run_dir in find_runs([sweep]):
        if not (run_dir / RESULT_FILE).is_file():
            unfinished.append(run_dir.name)
            continue
        results.append(read_json(run_dir / RESULT_FILE))
        _copy_run(run_dir, runs_out / run_dir.name)
    if not results:
        raise FileNotFoundError(f"{sweep}: no finished run to ship")
    report_dir = out / "report"
    if report_dir.exists():
        shutil.rmtree(report_dir)
    make_report([out], report_dir, at=at)
    for pdf in report_dir.glob("*.pdf"):
        pdf.unlink()
    kept = _keep_drawn_samples_only(out, at)
    readme = out / "README.md"
    own = out / OWN_BENCH if (out / OWN_BENCH).is_file() else None
    write_atomic_text(readme, "\n".join(provenance(results, unfinished, commands, notes, name, bench=own, at=at,
                                                samples_kept=kept)) + "\n")
    # then again with the folder's size (this README's own bytes change it by a few)
    write_atomic_text(readme, "\n".join(provenance(results, unfinished, commands, notes, name, _size(out), own, at,
                                                kept))
                      + "\n")
    return out


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m analysis.ship", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", type=Path)
    p.add_argument("--name", required=True, help="results/<name>/")
    p.add_argument("--command", action="append", default=[], help="a command that made the runs (repeatable)")
    p.add_argument("--note", action="append", default=[], help="a caveat the README should say (repeatable)")
    p.add_argument("--bench", type=Path, help="make bench's JSON for the reference's model, shipped as its own")
    p.add_argument("--at", type=int, metavar="N", help="the report scores every run at generator update N "
                                                       "(make figures ARGS=\"--at N\"), for runs of several budgets")
    args = p.parse_args(argv)
    try:
        out = ship(args.sweep, args.name, args.command, args.note, bench=args.bench, at=args.at)
    except (OSError, SchemaError, UnreadableRunError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"shipped: {out}")
    return out


if __name__ == "__main__":
    main()
