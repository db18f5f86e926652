"""Benchmark: the per-SIM features from the JVM processor (``features/jvm``, ``features.sim_state``)
on a simulated day, streamed in micro-batches with the state Spark keeps between them.

Two steps, each timed with the CPU of Spark's processes:

1. **events**: the processors' input from the CDRs of the day and the day before
   (``processor_events``: one row per CDR side and context key, with its flags), written
   as one Parquet file per ``--batch-minutes`` of event time (cut at whole minutes), the day
   before in one file first;
2. **features**: those files as a file stream, one per micro-batch, through the two processors
   (``SimContext`` keyed by cell or IMEI, then ``SimFeatures`` keyed by SIM; RocksDB state in the
   query's checkpoint) and ``named_features`` with the evidence calls
   (``--no-evidence``: without), each micro-batch's rows materialised. The day before is the
   first micro-batch and is not counted.

    .venv/bin/python bench/bench_sim_features.py --cdrs /tmp/sim100/cdrs --day 2025-03-05 \\
        --batch-minutes 1440 --work /tmp/bench_simf
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from cpu_use import process_cpu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", required=True, type=Path, help="a simulation's cdrs folder")
    parser.add_argument("--day", required=True, help="the day streamed (YYYY-MM-DD); the day before comes first")
    parser.add_argument("--batch-minutes", type=int, default=1440, help="event minutes per micro-batch")
    parser.add_argument("--max-batches", type=int, help="stream only the day's first micro-batches")
    parser.add_argument("--no-evidence", action="store_true", help="without each point's newest 50 calls")
    parser.add_argument("--work", required=True, type=Path)
    args = parser.parse_args()

    import pandas as pd
    from pyspark.sql import functions as F

    from features.settings import FeatureSettings
    from features.sim_state import named_features, processor_events, sim_points
    from pipeline.config import load_settings
    from pipeline.spark import build_spark

    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    settings = load_settings()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    features = FeatureSettings()
    before = (pd.Timestamp(args.day) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    cdrs = spark.read.parquet(str(args.cdrs.resolve())).where(F.col("day").isin(before, args.day)).drop("day")
    midnight = pd.Timestamp(args.day, tz="UTC").timestamp()
    day_cdrs = cdrs.where(F.col("start_time") >= F.lit(midnight).cast("timestamp"))
    if args.max_batches is not None:
        end = midnight + args.max_batches * args.batch_minutes * 60
        day_cdrs = day_cdrs.where(F.col("start_time") < F.lit(end).cast("timestamp"))
    n_cdrs = day_cdrs.count()

    cpu, started = process_cpu()["spark"], time.monotonic()
    slot = F.when(F.col("t") < midnight, F.lit(-1)).otherwise(
        F.floor((F.col("t") - midnight) / (args.batch_minutes * 60))
    )
    events = processor_events(cdrs, settings=features).withColumn("slot", slot)
    if args.max_batches is not None:
        events = events.where(F.col("slot") < args.max_batches)
    source = work / "events"
    events.repartition("slot").write.partitionBy("slot").parquet(str(source))
    prepare = {"wall_s": round(time.monotonic() - started, 1), "spark_cpu_s": round(process_cpu()["spark"] - cpu, 1)}
    print("events", prepare, flush=True)

    # one file per micro-batch (repartition by slot puts each slot in one task), oldest first:
    # the file stream takes the oldest file first
    stream_dir = work / "stream"
    stream_dir.mkdir()
    folders = sorted(source.glob("slot=*"), key=lambda p: int(p.name.split("=")[1]))
    for i, folder in enumerate(folders):
        (part,) = folder.glob("*.parquet")
        target = stream_dir / f"{i:05d}.parquet"
        part.rename(target)
        os.utime(target, (1_000_000 + i, 1_000_000 + i))
    schema = spark.read.parquet(str(stream_dir)).schema
    times: list[float] = []
    rows: list[int] = []

    def batch(frame, _id: int) -> None:
        t0 = time.monotonic()
        rows.append(frame.localCheckpoint().count())
        times.append(time.monotonic() - t0)

    stream = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(stream_dir))
    cpu, started = process_cpu()["spark"], time.monotonic()
    query = (
        named_features(
            sim_points(stream, settings=features, evidence=not args.no_evidence),
            settings=features,
            evidence=not args.no_evidence,
        )
        .writeStream.outputMode("append")
        .option("checkpointLocation", str(work / "checkpoint"))
        .foreachBatch(batch)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    stream_cpu = process_cpu()["spark"] - cpu
    counted = times[1:]
    result = {
        "command": " ".join(sys.argv),
        "cdrs_streamed": n_cdrs,
        "events": prepare,
        "micro_batches": len(times),
        "points_of_the_day": sum(rows[1:]),
        "median_s": round(statistics.median(counted), 2) if counted else None,
        "p90_s": round(sorted(counted)[int(0.9 * (len(counted) - 1))], 2) if counted else None,
        "day_s": round(sum(counted), 1),
        "cdrs_per_s": round(n_cdrs / sum(counted)) if counted else None,
        "day_before_s": round(times[0], 1),
        "stream_wall_s": round(time.monotonic() - started, 1),
        "stream_spark_cpu_s": round(stream_cpu, 1),
        "state_mb": round(sum(p.stat().st_size for p in (work / "checkpoint").rglob("*") if p.is_file()) / 1e6, 1),
    }
    print(json.dumps(result, indent=2))
    (work / "result.json").write_text(json.dumps(result, indent=2))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
