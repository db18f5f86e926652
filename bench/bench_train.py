"""Benchmark: features + training of both models, wall time per stage and peak memory.

Runs exactly what ``simguard train`` runs (``pipeline.modeling.train``) in a fresh home, so the
feature tables are built, not read from a cache, and times the stages from the progress messages
the job emits. Peak RSS is reported for the Python driver and for the Spark JVM (``VmHWM``).

    .venv/bin/python bench/bench_train.py --simulate 100000 --days 3 --seed 1 --work /tmp/bench100k

or, on CDRs that already exist:

    .venv/bin/python bench/bench_train.py --cdrs DIR/cdrs --labels DIR/labels --work /tmp/bench

Prints a Markdown table (for BENCHMARKS.md) and writes ``<work>/bench_train.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _jvm_peak_mb(spark: Any) -> float | None:
    try:
        pid = spark.sparkContext._gateway.proc.pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (AttributeError, OSError):
        return None
    return None


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class Recorder:
    """Progress callback that timestamps every stage message."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []

    def __call__(self, message: str) -> None:
        self.events.append((time.perf_counter(), message))
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def stages(self, end: float) -> list[tuple[str, float]]:
        out = []
        for i, (t, message) in enumerate(self.events):
            nxt = self.events[i + 1][0] if i + 1 < len(self.events) else end
            out.append((message, nxt - t))
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cdrs", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--simulate", type=int, metavar="SUBSCRIBERS", help="simulate first, into <work>/sim")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (home, simulation, results)")
    args = parser.parse_args(argv)

    from pipeline.config import load_settings

    work = args.work.resolve()
    home = work / "home"
    if home.exists():
        shutil.rmtree(home)  # a fresh home: no cached features, an empty registry
    timings: list[tuple[str, float]] = []
    if args.simulate:
        from pipeline.simulate import simulate

        t = time.perf_counter()
        simulate(work / "sim", subscribers=args.simulate, days=args.days, seed=args.seed)
        timings.append((f"simulate {args.simulate:,} subscribers x {args.days} days", time.perf_counter() - t))
        cdrs, labels = work / "sim" / "cdrs", work / "sim" / "labels"
    elif args.cdrs and args.labels:
        cdrs, labels = args.cdrs.resolve(), args.labels.resolve()
    else:
        parser.error("give --simulate N or both --cdrs and --labels")

    settings = load_settings(ROOT / "configs" / "default.yaml")
    jars = settings.jars_dir if settings.jars_dir.is_absolute() else ROOT / settings.jars_dir
    settings = settings.model_copy(update={"home": home, "jars_dir": jars})

    from pipeline.modeling import train
    from pipeline.spark import build_spark

    t_all = time.perf_counter()
    t = time.perf_counter()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    timings.append(("start Spark", time.perf_counter() - t))
    recorder = Recorder()
    t = time.perf_counter()
    outcomes = train(spark, settings, cdrs=cdrs, labels=labels, seed=args.seed, progress=recorder)
    end = time.perf_counter()
    timings.extend(recorder.stages(end))
    total = end - t_all
    jvm_mb = _jvm_peak_mb(spark)
    py_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_cdrs = sum(1 for _ in Path(cdrs).rglob("*.parquet"))

    features_s = sum(s for m, s in timings if m.startswith("features:"))
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": _machine(),
        "cdr_files": n_cdrs,
        "stages": [{"stage": m, "seconds": round(s, 1)} for m, s in timings],
        "features_s": round(features_s, 1),
        "features_and_training_s": round(total, 1),
        "peak_rss_mb": {"python": round(py_mb), "spark_jvm": round(jvm_mb) if jvm_mb else None},
        "models": [o.summary for o in outcomes],
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench_train.json").write_text(json.dumps(result, indent=2, default=str))

    print(f"\nmachine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
          f"{result['machine']['memory_gb']} GB\n")
    print("| stage | wall s |\n| --- | ---: |")
    for stage in result["stages"]:
        print(f"| {stage['stage']} | {stage['seconds']:.1f} |")
    print(f"| **features + training, both models (from Spark start)** | **{total:.1f}** |")
    print(f"\npeak RSS: Python {py_mb:.0f} MB, Spark JVM {jvm_mb or float('nan'):.0f} MB\n")
    print("| model | recall@FPR | test FPR | target | PR-AUC | rules recall | rules FPR |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in result["models"]:
        print(f"| {s['model']} | {s['recall_at_fpr']:.4f} | {s['fpr']:.5f} | {s['target_fpr']} | {s['pr_auc']:.4f} "
              f"| {s['baseline_recall_at_fpr']:.4f} | {s['baseline_fpr']:.5f} |")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
