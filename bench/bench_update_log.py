"""Benchmark: reading a feature update log as a live job's folders pile up, with and without
compaction.

A live ``simguard stream`` writes one folder per micro-batch and aggregate (8,640 a day at the
default 10 s trigger), and every SIM micro-batch reads three logs with :func:`latest`. This
writes a cell-cohort log of ``--batches`` micro-batch folders (``--rows`` updated buckets each,
10 s of event time apart) with pyarrow, as the job's writer lays them out, then times
:func:`latest` over the last 24 h of buckets at several folder counts. It then folds the log into
one generation with :func:`compact_log` (what the writer does every ``stream.log_compact_every``
batches) and times the same read again.

    .venv/bin/python bench/bench_update_log.py --work /tmp/bench_update_log

Prints a Markdown table for BENCHMARKS.md and writes ``<work>/bench_update_log.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = 86400


def _write_batches(log: Path, first: int, last: int, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for n in range(first, last):
        hour = (n * 10 // 3600) * 3600
        ids = range(n * rows, (n + 1) * rows)
        table = pa.table({
            "cell_id": pa.array([f"C{i % 5000:05d}" for i in ids]),
            "bucket": pa.array([hour] * rows, pa.int64()),
            "cell_sims": pa.array([3] * rows, pa.int64()),
        })
        folder = log / f"batch_id={n}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-00000.snappy.parquet")


def _time_read(spark, state: Path, newest: int) -> tuple[int, float]:
    from pyspark.sql import functions as F

    from streaming.features_stream import latest

    best = None
    for _ in range(2):  # the second read is warm (JIT, file system cache); the better one counts
        t = time.monotonic()
        count = latest(spark, state, "cell", where=F.col("bucket") >= newest - DAY).count()
        took = time.monotonic() - t
        best = took if best is None else min(best, took)
    return count, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--batches", type=int, default=8640, help="micro-batch folders at the end (8,640: a day)")
    parser.add_argument("--rows", type=int, default=200, help="updated buckets per micro-batch")
    args = parser.parse_args()

    from pipeline.config import load_settings
    from pipeline.spark import build_spark
    from streaming.features_stream import compact_log

    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    state = work / "state"
    log = state / "cell"
    settings = load_settings()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    steps = [n for n in (100, 1000, 3000) if n < args.batches] + [args.batches]
    results, written = [], 0
    for n in steps:
        _write_batches(log, written, n, args.rows)
        written = n
        newest = ((n - 1) * 10 // 3600) * 3600
        rows, took = _time_read(spark, state, newest)
        results.append({"folders": n, "generation": False, "rows_read": rows, "read_s": round(took, 2)})
        print(f"{n:,} batch folders: latest() of the last 24 h, {rows:,} rows, {took:.2f} s", flush=True)
    t = time.monotonic()
    compact_log(spark, log, "cell", upto=written - 1, keep_s=3 * DAY)
    compact_s = time.monotonic() - t
    rows, took = _time_read(spark, state, newest)
    results.append({"folders": 0, "generation": True, "rows_read": rows, "read_s": round(took, 2),
                    "compact_s": round(compact_s, 2)})
    print(f"one generation (compacted in {compact_s:.1f} s): {rows:,} rows, {took:.2f} s", flush=True)
    # the most a reader meets between two compactions: the generation and compact_every folders
    every = settings.stream.log_compact_every
    _write_batches(log, written, written + every, args.rows)
    newest = ((written + every - 1) * 10 // 3600) * 3600
    rows, took = _time_read(spark, state, newest)
    results.append({"folders": every, "generation": True, "rows_read": rows, "read_s": round(took, 2)})
    print(f"the generation and {every} batch folders after it: {rows:,} rows, {took:.2f} s", flush=True)
    (work / "bench_update_log.json").write_text(json.dumps({"command": " ".join(sys.argv), "runs": results}, indent=2))
    print("\n| log | rows returned | latest() s |\n| --- | ---: | ---: |")
    for r in results:
        if r["generation"]:
            what = "one compacted generation" + (f" and {r['folders']} micro-batch folders" if r["folders"] else "")
        else:
            what = f"{r['folders']:,} micro-batch folders"
        print(f"| {what} | {r['rows_read']:,} | {r['read_s']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
