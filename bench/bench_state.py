"""Benchmark: the cost of keeping per-SIM state per micro-batch, three designs in one run.

The same stream of micro-batches (``--batches`` Parquet files of ``--rows`` CDR-like events over
``--keys`` SIMs each, one file per trigger) goes through:

1. **delta**: the design ``simguard stream`` uses (``streaming.state``): each micro-batch's
   per-(SIM, minute) aggregates are appended to a Delta table once per (query, batch id), and the
   batch's SIMs' rows of the last 24 h are read back and merged into one window per SIM;
2. **builtin**: Spark's own streaming aggregation, ``groupBy(sim, window(1 minute)).agg`` in
   update mode with the RocksDB state store (changelog checkpointing): what Spark keeps itself,
   the minute buckets only, with no 24 h window merged;
3. **pandas_state**: ``applyInPandasWithState`` keeping each SIM's events of the last 24 h in
   Spark's state (RocksDB) and emitting its window count, the Python stateful API.

Reports the median and p90 wall seconds per micro-batch (the first two batches are warm-up) and
the state's size on disk at the end.

    .venv/bin/python bench/bench_state.py --work /tmp/bench_state --batches 12 --rows 5000 --keys 1000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = 86400


def _write_batches(folder: Path, *, batches: int, rows: int, keys: int, seed: int = 1) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = 1_764_000_000
    for b in range(batches):
        start = t0 + b * 60
        frame = pd.DataFrame(
            {
                "entity": [f"+8496{k:07d}" for k in rng.integers(0, keys, rows)],
                "t": start + rng.uniform(0, 60, rows),
                "duration_s": rng.exponential(60, rows),
                "b_number": [f"+8491{k:07d}" for k in rng.integers(0, 10 * keys, rows)],
            }
        )
        frame.to_parquet(folder / f"batch-{b:05d}.parquet", index=False)


def _stream(spark, source: Path):
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("entity", T.StringType()),
            T.StructField("t", T.DoubleType()),
            T.StructField("duration_s", T.DoubleType()),
            T.StructField("b_number", T.StringType()),
        ]
    )
    return spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(source))


def _timed(times: list[float], fn):
    def run(batch, batch_id: int) -> None:
        started = time.monotonic()
        fn(batch, batch_id)
        times.append(time.monotonic() - started)

    return run


def delta_design(spark, source: Path, work: Path) -> list[float]:
    from pyspark.sql import functions as F

    from streaming.state import StateTable

    table = StateTable(spark, (work / "delta-state").as_uri())

    def batch(frame, batch_id: int) -> None:
        minutes = frame.groupBy("entity", (F.floor(F.col("t") / 60) * 60).cast("long").alias("b")).agg(
            F.count(F.lit(1)).alias("n_out"),
            F.collect_list(F.struct("t", "b_number", "duration_s")).alias("calls"),
        )
        rows = minutes.withColumn("part", F.lit("sim")).withColumn("at", F.col("b")).persist()
        table.append(rows.select("part", "at", "entity", "b", "n_out", "calls"), app_id="bench", batch_id=batch_id)
        newest = rows.agg(F.max("b")).first()[0]
        keys = rows.select("entity").distinct()
        state = (
            table.spark.read.format("delta").load(table.uri)
            .where((F.col("part") == "sim") & (F.col("at") >= newest - DAY))
            .join(keys, ["entity"], "left_semi")
        )
        state.groupBy("entity").agg(F.sum("n_out").alias("n"), F.flatten(F.collect_list("calls")).alias("c")).count()
        rows.unpersist()

    times: list[float] = []
    q = (
        _stream(spark, source).writeStream.option("checkpointLocation", str(work / "delta-ckpt"))
        .foreachBatch(_timed(times, batch)).trigger(availableNow=True).start()
    )
    q.awaitTermination()
    return times


def builtin_design(spark, source: Path, work: Path) -> list[float]:
    from pyspark.sql import functions as F

    agg = (
        _stream(spark, source)
        .withColumn("ts", F.col("t").cast("timestamp"))
        .withWatermark("ts", "1 hour")
        .groupBy("entity", F.window("ts", "1 minute"))
        .agg(F.count(F.lit(1)).alias("n_out"), F.collect_list(F.struct("t", "b_number", "duration_s")).alias("calls"))
    )
    times: list[float] = []
    q = (
        agg.writeStream.outputMode("update").option("checkpointLocation", str(work / "builtin-ckpt"))
        .foreachBatch(_timed(times, lambda frame, _id: frame.count())).trigger(availableNow=True).start()
    )
    q.awaitTermination()
    return times


def pandas_state_design(spark, source: Path, work: Path) -> list[float]:
    import pandas as pd
    from pyspark.sql.streaming.state import GroupStateTimeout

    def update(key, frames, state):
        old = pd.DataFrame({"t": state.get[0]}) if state.exists else pd.DataFrame({"t": []})
        events = pd.concat([old, *[f[["t"]] for f in frames]], ignore_index=True)
        events = events[events["t"] >= events["t"].max() - DAY]
        state.update((events["t"].tolist(),))
        yield pd.DataFrame({"entity": [key[0]], "n": [len(events)]})

    out = _stream(spark, source).groupBy("entity").applyInPandasWithState(
        update, "entity string, n long", "t array<double>", "update", GroupStateTimeout.NoTimeout
    )
    times: list[float] = []
    q = (
        out.writeStream.outputMode("update").option("checkpointLocation", str(work / "pandas-ckpt"))
        .foreachBatch(_timed(times, lambda frame, _id: frame.count())).trigger(availableNow=True).start()
    )
    q.awaitTermination()
    return times


def _size_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()

    from pipeline.config import load_settings
    from pipeline.spark import build_spark

    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    source = work / "source"
    _write_batches(source, batches=args.batches, rows=args.rows, keys=args.keys)
    settings = load_settings()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    spark.conf.set(
        "spark.sql.streaming.stateStore.providerClass",
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    )
    spark.conf.set("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
    results = {}
    for name, design, state in (
        ("delta", delta_design, "delta-state"),
        ("builtin", builtin_design, "builtin-ckpt"),
        ("pandas_state", pandas_state_design, "pandas-ckpt"),
    ):
        times = design(spark, source, work)[2:]
        results[name] = {
            "batches": len(times) + 2,
            "median_s": round(statistics.median(times), 2),
            "p90_s": round(sorted(times)[int(0.9 * (len(times) - 1))], 2),
            "state_mb": _size_mb(work / state),
        }
        print(name, results[name], flush=True)
    (work / "bench_state.json").write_text(json.dumps({"command": " ".join(sys.argv), **results}, indent=2))
    print("\n| design | median s per micro-batch | p90 s | state on disk, MB |\n| --- | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['median_s']} | {r['p90_s']} | {r['state_mb']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
