"""Benchmark: sustained throughput of the whole streaming job against a preloaded backlog.

A local KRaft broker is started on free ports in a temporary folder. The CDRs are loaded into a
fresh topic with Spark's Kafka sink (the same JSON as ``simguard replay``). The same topic is then
read twice, each time from a new checkpoint:

1. **ceiling**: a Structured Streaming query that only reads the topic and counts the records
   (``availableNow``), the most the connector and this machine can deliver;
2. **job**: ``simguard stream --available-now`` as composed by ``pipeline.stream`` (validation,
   dead letters, the Delta state table, features as of each micro-batch, champion scoring,
   policy, blocklist store, and Kafka publication beside it), with the champions of an existing
   home (``--home``, e.g. the home of a ``bench_train.py`` run).

Both report records per second of wall time. Simulated CDRs are historical, so the job's
validation window is widened for this backfill (``stream.validation.max_past_days``).

With ``--labels`` the run also measures detection (precision, recall, calls and minutes before a
block per fraud type) against the simulator's ground truth, with the registered-business list the
simulator wrote beside the labels loaded as the policy's allowlist, as ``simguard evaluate`` and
``make demo`` do. ``--warm-day`` first streams an earlier day in large micro-batches from the same
checkpoint, so the measured day starts with the window state a job that was already running would
have (a live job is not cold at the start of every day); the ceiling is then not measured, and the
job's time and the detection figures are the measured day's only. ``--max-offsets`` sets the
micro-batch size (records per batch): about one minute, ten minutes or a whole day of traffic.
``--since`` and ``--until`` stream a window of the day, the records before it loaded first (a
stream that has been running), and count only the fraud that begins inside it.

    .venv/bin/python bench/bench_stream.py --cdrs /tmp/sim100k/cdrs --day 2025-03-05 \\
        --home /tmp/b100b/home --work /tmp/bench_stream

Writes ``<work>/bench_stream.json`` and prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cpu_use import process_cpu  # noqa: E402
from stream_runs import bench_environment, start_broker, use_fresh_topics  # noqa: E402


def _load_topic(spark, cdrs, *, bootstrap: str, topic: str) -> int:
    from pyspark.sql import functions as F

    from features.schema import FIELD_NAMES

    value = F.to_json(
        F.struct(*[F.col(c) for c in FIELD_NAMES]),
        {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'", "ignoreNullFields": "false"},
    )
    out = cdrs.select(F.col("record_id").alias("key"), value.alias("value"))
    out.write.format("kafka").option("kafka.bootstrap.servers", bootstrap).option("topic", topic).save()
    return cdrs.count()


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (Linux); None elsewhere."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the machine's CPU time that was busy between two ``_cpu_times`` readings."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def _ceiling(spark, *, bootstrap: str, topic: str, checkpoint: Path) -> tuple[int, float]:
    counted = []

    def count(batch, batch_id: int) -> None:
        counted.append(batch.count())

    started = time.monotonic()
    query = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .writeStream.option("checkpointLocation", str(checkpoint))
        .foreachBatch(count)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return sum(counted), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", required=True, type=Path, help="canonical CDR Parquet folder")
    parser.add_argument("--day", help="only this UTC day of the CDRs (YYYY-MM-DD)")
    parser.add_argument(
        "--until", metavar="HH:MM", help="with --day: only its records before this UTC time (a window of the day)"
    )
    parser.add_argument(
        "--since",
        metavar="HH:MM",
        help="with --day: stream its records from this UTC time on; those before it (and --warm-from-day's) are "
        "loaded into the state first",
    )
    parser.add_argument("--home", required=True, type=Path, help="SIMGuard home with registered champions")
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument(
        "--labels", type=Path, help="the labels/ folder: adds detection delay, precision and recall per fraud type"
    )
    parser.add_argument("--max-offsets", type=int, default=500_000, help="maxOffsetsPerTrigger of the job")
    parser.add_argument("--warm-day", help="stream this earlier UTC day first, in large micro-batches (YYYY-MM-DD)")
    parser.add_argument(
        "--warm-from-day",
        help="load this earlier UTC day into a new state first (simguard stream --warm-from; no decisions)",
    )
    args = parser.parse_args()
    if (args.until or args.since) and not args.day:
        parser.error("--until and --since need --day")
    if args.since and args.warm_day:
        parser.error("--since loads the history into a new state: use --warm-from-day, not --warm-day")

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    extra = {
        "SIMGUARD_STREAM__VALIDATION__MAX_PAST_DAYS": "100000",
        "SIMGUARD_STREAM__MAX_OFFSETS_PER_TRIGGER": str(args.max_offsets),
    }
    registered = args.labels / "registered_businesses.parquet" if args.labels else None
    if registered is not None and registered.exists():
        extra["SIMGUARD_BLOCKLIST__REGISTERED_BUSINESSES"] = str(registered.resolve())
    bench_environment(home=args.home, work=work, **extra)

    from pipeline.config import load_settings
    from pipeline.featurize import read_cdrs
    from pipeline.spark import build_spark

    broker = start_broker(work)
    try:
        topic = use_fresh_topics(broker.bootstrap_servers, "bench.cdrs")
        settings = load_settings()
        spark = build_spark(settings.spark, jars_dir=settings.jars_dir)

        from pyspark.sql import functions as F

        def day_of(day: str | None, until: str | None = None, since: str | None = None):
            cdrs = read_cdrs(spark, args.cdrs)
            if not day:
                return cdrs
            start = F.lit(f"{day} {since}" if since else day).cast("timestamp")
            end = F.lit(f"{day} {until}").cast("timestamp") if until else F.date_add(F.lit(day).cast("timestamp"), 1)
            return cdrs.where((F.col("start_time") >= start) & (F.col("start_time") < end))

        from pipeline.stream import run_stream

        warm_records = 0
        if args.warm_day:
            _load_topic(spark, day_of(args.warm_day), bootstrap=broker.bootstrap_servers, topic=topic)
            warm = settings.model_copy(
                update={
                    "stream": settings.stream.model_copy(update={"max_offsets_per_trigger": 2_000_000})
                }
            )
            t = time.monotonic()
            summary = run_stream(spark, warm, available_now=True)
            # the run's summary counts every record its checkpoint has taken in
            warm_records = summary["records_in"]
            print(
                f"warm-up day {args.warm_day}: {summary['records_in']:,} records in {time.monotonic() - t:.1f} s",
                flush=True,
            )
        # decisions of the measured day are those stored from here on
        measured_from = pd.Timestamp.now(tz="UTC")
        t = time.monotonic()
        loaded = _load_topic(
            spark, day_of(args.day, args.until, args.since), bootstrap=broker.bootstrap_servers, topic=topic
        )
        load_s = time.monotonic() - t
        print(f"loaded {loaded:,} CDRs into {topic} in {load_s:.1f} s", flush=True)

        read = ceiling_s = None
        if not args.warm_day:
            read, ceiling_s = _ceiling(
                spark, bootstrap=broker.bootstrap_servers, topic=topic, checkpoint=work / "ceiling-checkpoint"
            )
            print(f"ceiling: {read:,} records in {ceiling_s:.1f} s", flush=True)

        warm_s = 0.0
        warm_from = args.cdrs / f"day={args.warm_from_day}" if args.warm_from_day else None
        if args.since:
            # the history a stream started at --since would have: the day before and the day so far
            history = day_of(args.day, args.since)
            if args.warm_from_day:
                history = day_of(args.warm_from_day).unionByName(history)
            warm_from = work / "history"
            history.write.mode("overwrite").parquet(str(warm_from))

        def said(line: str) -> None:
            nonlocal warm_s
            if line.startswith("warm start"):
                warm_s = time.monotonic() - t
            print(line, flush=True)

        t, cpu, by_process = time.monotonic(), _cpu_times(), process_cpu()
        summary = run_stream(spark, settings, available_now=True, warm_from=warm_from, say=said)
        # the warm start's load is not the stream's work
        job_s = time.monotonic() - t - warm_s
        # how much of the machine the job kept busy (both cores: 1.0), and by which processes
        busy = _busy_share(cpu, _cpu_times())
        cpu_s = {k: round(v - by_process.get(k, 0.0), 1) for k, v in process_cpu().items()}
        print("CPU seconds during the job, by process:", json.dumps(cpu_s), flush=True)
        records = summary["records_in"] - warm_records
        print(f"job: {records:,} records in {job_s:.1f} s, CPU busy {busy} of {os.cpu_count()} cores", flush=True)
    finally:
        broker.stop()

    from stream_runs import batches

    runs = batches(settings.database_url)
    runs = runs[runs["planned_at"] >= measured_from.timestamp()]
    breakdown = _breakdown(runs)
    from pipeline.report import read_store

    store = read_store(settings.database_url)
    entries = _entries(store["entries"])
    detection = (
        _detection(
            settings, store, cdrs_dir=args.cdrs, day=args.day, until=args.until, start=args.since,
            labels=args.labels, since=measured_from,
        )
        if args.labels
        else None
    )
    result = {
        "command": " ".join(sys.argv),
        "cdrs": loaded,
        "load_s": round(load_s, 1),
        "warm_day": args.warm_day,
        "warm_from_day": args.warm_from_day,
        "until": args.until,
        "since": args.since,
        "warm_load_s": round(warm_s, 1),
        "registered_businesses": extra.get("SIMGUARD_BLOCKLIST__REGISTERED_BUSINESSES"),
        "ceiling": None
        if read is None
        else {"records": read, "wall_s": round(ceiling_s, 1), "records_per_s": round(read / ceiling_s)},
        "job": {
            "records": records,
            "wall_s": round(job_s, 1),
            "records_per_s": round(records / job_s),
            "cpu_busy_share": busy,
            "cpu_s_by_process": cpu_s,
            "cpus": os.cpu_count(),
            "max_offsets_per_trigger": args.max_offsets,
            "summary": summary,
        },
        "load_avg": os.getloadavg(),
        "detection": detection,
        "entries": entries,
        "batches": breakdown,
    }
    (work / "bench_stream.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    print("\n| run | records | wall s | records/s |\n| --- | ---: | ---: | ---: |")
    if read is not None:
        print(f"| read and count (ceiling) | {read:,} | {ceiling_s:.1f} | {read / ceiling_s:,.0f} |")
    print(f"| whole job (available-now) | {records:,} | {job_s:.1f} | {records / job_s:,.0f} |")
    print("decisions (one per scored window row or call):", json.dumps(summary["decisions"], sort_keys=True))
    print("blocklist entries (one per number and scope):", json.dumps(entries, sort_keys=True))
    stages = ", ".join(f"{k} {v:.1f}" for k, v in breakdown["stages_s"].items())
    print(f"\nmicro-batches: {breakdown['batches']}; median {breakdown['median_s']} s each; "
          f"stages, s (sum over batches): {stages}")
    if detection:
        print(
            "\n| fraud type | blocked / positives | calls before block (median, p95) "
            "| minutes before block (median, p95) |\n| --- | ---: | ---: | ---: |"
        )
        for label, d in detection["by_type"].items():
            print(f"| {label} | {d['blocked']} / {d['positives']} | {_q(d['calls'])} | {_q(d['minutes'])} |")
        print(
            f"precision {detection['precision']:.3f}, recall {detection['recall']:.3f} (SIMs); "
            f"spoofed calls precision {detection['calls_precision']:.3f}, recall {detection['calls_recall']:.3f}"
        )
    return 0


def _entries(entries: pd.DataFrame) -> dict[str, int]:
    """Blocklist entries the run stored, by action and fraud type (e.g. ``block:simbox``)."""
    return {f"{a}:{t}": int(n) for (a, t), n in entries.groupby(["action", "fraud_type"]).size().items()}


def _breakdown(runs: pd.DataFrame) -> dict:
    """Micro-batches of the measured run, their median wall time and summed stage timings."""
    stages: dict[str, float] = {}
    for laps in runs["stages_s"]:
        for k, v in (laps or {}).items():
            stages[k] = round(stages.get(k, 0.0) + v, 3)
    median = float(runs["duration_s"].median()) if len(runs) else None
    return {"batches": len(runs), "median_s": median, "stages_s": stages}


def _q(q: dict) -> str:
    return "-" if q["median"] is None else f"{q['median']:.0f}, {q['p95']:.0f}"


def _detection(
    settings, store: dict[str, pd.DataFrame], *, cdrs_dir: Path, day: str | None, until: str | None,
    start: str | None, labels: Path, since: pd.Timestamp,
) -> dict:
    """Detection delay per fraud type, in event time: the voice calls and minutes a fraud SIM
    made between its first fraudulent call and its block, with the ground truth of ``simguard
    report``. A block's time is its row's scoring time (``observed_at``), at most the newest CDR
    its micro-batch had read: when a live stream that keeps up would block the SIM, processing
    latency aside (``bench_latency.py``). With ``until``, the ground truth is that of the streamed
    window of the day; with ``start``, fraud SIMs that began before it are excluded."""
    from pipeline.report import block_detections, day_files, detection_delays, ground_truth, precision_recall

    files = day_files(cdrs_dir)
    if day:
        files = [p for p in files if p.parent.name == f"day={day}"]
    truth = ground_truth(
        labels,
        files,
        since=pd.Timestamp(f"{day} {start}", tz="UTC") if start else None,
        before=pd.Timestamp(f"{day} {until}", tz="UTC") if until else None,
    )
    detections = store["detections"]
    # the measured day's decisions (a block carried over from the warm-up day is counted when
    # the measured day meets the number again: ``already_blocked``)
    detections = detections[pd.to_datetime(detections["created_at"], utc=True) >= since]
    sim_blocks, call_blocks = block_detections(detections)
    delays = detection_delays(sim_blocks, truth)
    positives = truth.sims[truth.sims["role"] == "positive"]
    sims = precision_recall(set(sim_blocks["number"].astype(str)), truth.sims)
    calls = precision_recall(set(call_blocks["record_id"].astype(str)), truth.calls)

    def quantiles(values) -> dict:
        if len(values) == 0:
            return {"median": None, "p95": None}
        return {"median": float(values.quantile(0.5)), "p95": float(values.quantile(0.95))}

    by_type = {}
    for label, group in positives.groupby("label"):
        d = delays[delays["label"] == label]
        by_type[str(label)] = {
            "positives": len(group),
            "blocked": len(d),
            "calls": quantiles(d["calls"].astype(float)),
            "minutes": quantiles(d["minutes"]),
        }
    return {
        "by_type": by_type,
        "precision": sims["precision"],
        "recall": sims["recall"],
        "calls_precision": calls["precision"],
        "calls_recall": calls["recall"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
