"""Benchmark: the cost of keeping per-SIM state per micro-batch, three designs in one run.

The same stream of micro-batches (``--batches`` Parquet files of ``--rows`` SIM events over
``--keys`` SIMs each, one file per trigger; ``EVENT_COLUMNS``) goes through:

1. **delta**: the design ``simguard stream`` uses (``streaming.state``): each micro-batch's
   per-(SIM, minute) aggregates are appended to a Delta table once per (query, batch id), and the
   batch's SIMs' rows of the last 24 h are read back and merged into one window per SIM;
2. **builtin**: Spark's own streaming aggregation, ``groupBy(sim, window(1 minute)).agg`` in
   update mode with the RocksDB state store (changelog checkpointing): what Spark keeps itself,
   the minute buckets only, with no 24 h window merged;
3. **pandas_state**: ``applyInPandasWithState`` keeping each SIM's events of the last 24 h in
   Spark's state (RocksDB) and emitting its window count, the Python stateful API;

The fourth design measured here before, a Java ``StatefulProcessor`` run by ``transformWithState``,
is now the project's own (``features/jvm``): ``bench_sim_features.py`` measures it.

With ``--cdrs`` and ``--day`` the micro-batches are a simulated day's CDRs instead, as SIM events
(each CDR an event out of its caller and an event in of its callee), ``--batch-minutes`` of event
time each (cut at whole minutes), optionally after the day before in one micro-batch (``--warm``).

Reports the median and p90 wall seconds per micro-batch and the events per second over the counted
ones (not counted: the first two synthetic batches, warm-up; the day before with ``--warm``), the
Spark CPU seconds of each design's whole run, and the state's size on disk at the end.

    .venv/bin/python bench/bench_state.py --work /tmp/bench_state --batches 12 --rows 5000 --keys 1000
    .venv/bin/python bench/bench_state.py --work /tmp/bench_day --cdrs /tmp/sim100/cdrs --day 2025-03-05 \
        --batch-minutes 1440 --designs delta,builtin
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from cpu_use import process_cpu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = 86400
#: the events every design reads: ``b_number``
#: is the other party, ``cell`` and ``imei`` are "" when unknown
EVENT_COLUMNS = {"entity": "string", "t": "double", "duration_s": "double", "b_number": "string",
                 "out": "boolean", "answered": "boolean", "sms": "boolean", "night": "boolean",
                 "cell": "string", "imei": "string"}


def _write_batches(folder: Path, *, batches: int, rows: int, keys: int, seed: int = 1) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = 1_764_000_000
    for b in range(batches):
        start = t0 + b * 60
        entity = rng.integers(0, keys, rows)
        frame = pd.DataFrame(
            {
                "entity": [f"+8496{k:07d}" for k in entity],
                "t": start + rng.uniform(0, 60, rows),
                "duration_s": rng.exponential(60, rows),
                "b_number": [f"+8491{k:07d}" for k in rng.integers(0, 10 * keys, rows)],
                "out": True,
                "answered": rng.uniform(size=rows) < 0.7,
                "sms": False,
                "night": False,
                "cell": [f"C{k:03d}" for k in rng.integers(0, 50, rows)],
                "imei": [f"35{k:013d}" for k in entity],
            }
        )
        frame.to_parquet(folder / f"batch-{b:05d}.parquet", index=False)


def _write_day(folder: Path, cdrs: Path, day: str, *, batch_minutes: int, warm: bool, max_batches: int | None) -> int:
    """A simulated day's CDRs as SIM events (each CDR the caller's event out and the callee's event
    in, ``EVENT_COLUMNS``), one Parquet file per
    ``batch_minutes`` of event time (the first ``max_batches`` of them); with ``warm`` the day before
    comes first, in one file.
    Returns the number of files that hold the day before (0 or 1)."""
    import pandas as pd

    columns = ["a_number", "b_number", "start_time", "duration_s", "release_cause", "event_type", "cell_id", "a_imei"]

    def read(d: str) -> pd.DataFrame:
        cdr = pd.concat([pd.read_parquet(f, columns=columns) for f in sorted((cdrs / f"day={d}").glob("*.parquet"))])
        t = cdr["start_time"].astype("int64") / 1e6
        local_hour = (cdr["start_time"] + pd.Timedelta(hours=7)).dt.hour
        common = {"t": t, "duration_s": cdr["duration_s"], "answered": cdr["release_cause"] == "answered",
                  "sms": cdr["event_type"] == "sms", "night": (local_hour < 6) | (local_hour >= 22)}
        made = pd.DataFrame({"entity": cdr["a_number"], **common, "b_number": cdr["b_number"], "out": True,
                             "cell": cdr["cell_id"].fillna(""), "imei": cdr["a_imei"].fillna("")})
        received = pd.DataFrame({"entity": cdr["b_number"], **common, "b_number": cdr["a_number"], "out": False,
                                 "cell": "", "imei": ""})
        frame = pd.concat([made, received], ignore_index=True)
        return frame[list(EVENT_COLUMNS)].sort_values("t", kind="stable")

    folder.mkdir(parents=True, exist_ok=True)
    before = 0
    if warm:
        previous = (pd.Timestamp(day) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
        read(previous).to_parquet(folder / "batch-00000.parquet", index=False)
        before = 1
    frame = read(day)
    midnight = pd.Timestamp(day, tz="UTC").timestamp()
    slot = ((frame["t"] - midnight) // (batch_minutes * 60)).astype("int64")  # whole minutes each
    for k, (_, part) in enumerate(frame.groupby(slot, sort=True)):
        if max_batches is not None and k >= max_batches:
            break
        part.to_parquet(folder / f"batch-{before + k:05d}.parquet", index=False)
    return before


def _stream(spark, source: Path):
    from pyspark.sql import types as T

    kinds = {"string": T.StringType(), "double": T.DoubleType(), "boolean": T.BooleanType()}
    schema = T.StructType([T.StructField(name, kinds[kind]) for name, kind in EVENT_COLUMNS.items()])
    return spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(source))


def _timed(times: list[float], fn, emitted: list[int] | None = None):
    def run(batch, batch_id: int) -> None:
        started = time.monotonic()
        n = fn(batch, batch_id)
        times.append(time.monotonic() - started)
        if emitted is not None:
            emitted.append(n)

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


def state_spark():
    """The SparkSession of the bench (RocksDB state, as the project's configuration sets it)."""
    from pipeline.config import load_settings
    from pipeline.spark import build_spark

    settings = load_settings()
    return build_spark(settings.spark, jars_dir=settings.jars_dir)


def _size_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--cdrs", type=Path, help="a simulation's cdrs folder: stream its --day instead")
    parser.add_argument("--day", help="the day of --cdrs to stream (YYYY-MM-DD)")
    parser.add_argument("--batch-minutes", type=int, default=1440, help="event minutes per micro-batch of --day")
    parser.add_argument("--max-batches", type=int, help="stream only the day's first micro-batches")
    parser.add_argument("--warm", action="store_true", help="the day before --day first, in one micro-batch")
    parser.add_argument("--designs", default="delta,builtin,pandas_state",
                        help="comma-separated designs to run, in this order")
    args = parser.parse_args()

    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    source = work / "source"
    if args.cdrs:
        skip = _write_day(source, args.cdrs.resolve(), args.day, batch_minutes=args.batch_minutes, warm=args.warm,
                          max_batches=args.max_batches)
    else:
        _write_batches(source, batches=args.batches, rows=args.rows, keys=args.keys)
        skip = 2
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(source.glob("*.parquet")))
    spark = state_spark()
    files = sorted(source.glob("*.parquet"))
    counted = sum(pq.ParquetFile(f).metadata.num_rows for f in files[skip:])
    results = {}
    for name, design, state in (
        ("delta", delta_design, "delta-state"),
        ("builtin", builtin_design, "builtin-ckpt"),
        ("pandas_state", pandas_state_design, "pandas-ckpt"),
    ):
        if name not in args.designs.split(","):
            continue
        cpu = process_cpu()["spark"]
        times = design(spark, source, work)
        cpu = process_cpu()["spark"] - cpu
        times = times[skip:]
        results[name] = {
            "batches": len(times) + skip,
            "counted_rows": counted,
            "median_s": round(statistics.median(times), 2),
            "p90_s": round(sorted(times)[int(0.9 * (len(times) - 1))], 2),
            "counted_s": round(sum(times), 1),
            "rows_per_s": round(counted / sum(times)),
            "spark_cpu_s": round(cpu, 1),
            "state_mb": _size_mb(work / state),
        }
        print(name, results[name], flush=True)
    (work / "bench_state.json").write_text(json.dumps({"command": " ".join(sys.argv), **results}, indent=2))
    print(f"\n{len(files)} micro-batches, {rows:,} rows; the first {skip} not counted ({counted:,} rows counted)")
    print("\n| design | median s per micro-batch | p90 s | counted s | rows/s | Spark CPU s (all batches) "
          "| state on disk, MB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['median_s']} | {r['p90_s']} | {r['counted_s']} | {r['rows_per_s']:,} "
              f"| {r['spark_cpu_s']} | {r['state_mb']} |")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
