"""Benchmark: where the SIM features of one day go, step by step (the stream's SIM stage).

Builds the minute rows and context members of ``--day`` (and, with ``--warm``, the day before)
from canonical CDRs, the scoring points of the day, then runs each step of
``features.sim.sim_features_at`` on its own, materialised with a local checkpoint, and prints
wall seconds, rows out and the CPU seconds of Spark's processes (the JVM and its Python workers) per step.

    .venv/bin/python bench/bench_sim_stage.py --cdrs /tmp/sim10/cdrs --day 2025-03-05
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from cpu_use import process_cpu  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", required=True, type=Path, help="canonical CDR Parquet folder")
    parser.add_argument("--day", required=True, help="the day scored (YYYY-MM-DD, UTC)")
    parser.add_argument("--warm", action="store_true", help="the state holds the day before too")
    parser.add_argument("--save", help="write the named features here (Parquet), to compare two runs")
    args = parser.parse_args()

    from pyspark.sql import functions as F

    from features.numbering import load_numbering_plan
    from features.sim import _with_context, assemble_sim_features, sim_state
    from features.sim_rows import MINUTE
    from features.sim_windows import hour_rows, scoring_points, window_rows
    from pipeline.config import load_settings
    from pipeline.featurize import read_cdrs
    from pipeline.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    fs, plan = settings.features, load_numbering_plan()
    day = dt.datetime.fromisoformat(args.day).replace(tzinfo=dt.UTC)
    since = day - dt.timedelta(days=1 if args.warm else 0)
    until = day + dt.timedelta(days=1)
    cdrs = read_cdrs(spark, args.cdrs).where(
        (F.col("start_time") >= F.lit(since)) & (F.col("start_time") < F.lit(until))
    )

    results = []

    def step(name: str, frame):
        cpu, t = process_cpu()["spark"], time.monotonic()
        out = frame.localCheckpoint()
        n = out.count()
        results.append((name, time.monotonic() - t, process_cpu()["spark"] - cpu, n))
        print(f"{name}: {results[-1][1]:.1f} s wall, {results[-1][2]:.1f} s Spark CPU, {n:,} rows", flush=True)
        return out

    rows, members = sim_state(cdrs, settings=fs, plan=plan)
    rows = step("minute rows", rows)
    members = step("context members", members)
    points = step("scoring points", scoring_points(rows.where(F.col(MINUTE) >= F.lit(day.timestamp())), settings=fs))
    with_ctx = step("rows with context", _with_context(rows, members, settings=fs, partials=False))
    hours = step("hour rows", hour_rows(with_ctx, settings=fs))
    windows = step("window rows", window_rows(with_ctx, points, settings=fs, hours=hours))
    named = step("named features", assemble_sim_features(windows, settings=fs, plan=plan, evidence=True))
    if args.save:
        named.write.mode("overwrite").parquet(args.save)
    total_wall = sum(r[1] for r in results)
    total_cpu = sum(r[2] for r in results)
    print("\n| step | wall s | Spark CPU s | rows out |\n| --- | ---: | ---: | ---: |")
    for name, wall, cpu, n in results:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {n:,} |")
    print(f"| all | {total_wall:.1f} | {total_cpu:.1f} | |")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
