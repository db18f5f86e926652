"""Benchmark: merging the stream's (SIM, minute) state rows, three ways, on one day's rows.

``none`` writes the rows as they are, ``merge`` merges every key (``merge_rows``), ``partials``
merges only keys with several rows (``merge_partials``, what the stream does). Each is written to
Spark's ``noop`` sink; ``--rounds`` rounds in one process, so the ratios share the machine's load.

    .venv/bin/python bench/bench_merge.py --cdrs /tmp/sim10k/cdrs --day 2025-03-05
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", required=True, type=Path, help="canonical CDR Parquet folder")
    parser.add_argument("--day", help="only this UTC day (YYYY-MM-DD)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from pyspark.sql import functions as F

    from features.numbering import load_numbering_plan
    from features.sim_rows import ENTITY, MINUTE, merge_partials, merge_rows, minute_rows, sim_events
    from pipeline.config import load_settings
    from pipeline.featurize import read_cdrs
    from pipeline.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    fs = settings.features
    cdrs = read_cdrs(spark, args.cdrs)
    if args.day:
        start = F.lit(args.day).cast("timestamp")
        cdrs = cdrs.where((F.col("start_time") >= start) & (F.col("start_time") < F.date_add(start, 1)))
    rows = minute_rows(sim_events(cdrs, plan=load_numbering_plan()), settings=fs).persist()
    print(f"{rows.count():,} minute rows", flush=True)
    keys = [ENTITY, MINUTE]
    ways = {
        "none": lambda: rows,
        "merge": lambda: merge_rows(rows, keys, max_calls=fs.max_calls).drop("first"),
        "partials": lambda: merge_partials(rows, keys, max_calls=fs.max_calls),
    }
    for r in range(args.rounds):
        times = {}
        for name, frame in ways.items():
            started = time.monotonic()
            frame().write.format("noop").mode("overwrite").save()
            times[name] = round(time.monotonic() - started, 1)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v} s" for k, v in times.items()), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
