"""Benchmark: processing latency of the running stream, from a CDR landing in Kafka to its block
reaching the operator's blocklist topic, at a steady replay rate.

A local KRaft broker is started on free ports. ``simguard stream`` (not ``--available-now``: the
processing-time trigger of the config) reads a fresh topic while one simulated day is replayed
into it at ``--rate`` CDRs per second, its event times shifted so that the day ends now
(every record is in the past when it is sent). When the replay is over the job runs
``--drain-s`` more seconds, then stops.

For every new block (a detection with outcome ``blocked``; SIM blocks and trunk rules for spoofed
calls), the deciding micro-batch is the one whose run holds the decision's ``created_at``; the
CDRs it read are in the stream's archive with their batch id and Kafka timestamp. Latency = the
Kafka timestamp of the block's record on the operator's topic (``viettel``) minus the Kafka
timestamp of the *earliest* CDR of that number in the deciding batch (the worst case: any of the
batch's records may be the one that tipped the score), and, for a spoofed call, of the call.

    .venv/bin/python bench/bench_latency.py --cdrs /tmp/b10/sim/cdrs --day 2025-03-05 \\
        --home /tmp/b10m/home --work /tmp/bench_latency --rate 1000 --trigger-s 1

Writes ``<work>/bench_latency.json`` and prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import threading
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stream_runs import bench_environment, start_broker, use_fresh_topics  # noqa: E402


def _day_folder(cdrs: Path, day: str, work: Path) -> Path:
    """A CDR folder holding only ``day`` (a link to the simulation's day folder)."""
    from pipeline.simulate import cdr_files

    files = [p for p in cdr_files(cdrs) if p.parent.name == f"day={day}"]
    if not files:
        raise SystemExit(f"{cdrs}: no CDR files for day {day}")
    folder = work / "replay" / "cdrs"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / files[0].parent.name
    if not link.exists():
        link.symlink_to(files[0].parent.resolve(), target_is_directory=True)
    return folder


def _latencies(cdrs: pd.DataFrame, runs: pd.DataFrame, detections: pd.DataFrame,
               published: dict[int, float]) -> pd.DataFrame:
    from stream_runs import deciding_batch

    from pipeline.report import block_detections

    sim_blocks, call_blocks = block_detections(detections)
    out = []
    for kind, blocks in (("SIM block", sim_blocks), ("spoofed-call trunk rule", call_blocks)):
        blocks = blocks[blocks["outcome"] == "blocked"]
        if blocks.empty or runs.empty:
            continue
        for (_, block), i in zip(blocks.iterrows(), deciding_batch(blocks["created_at"], runs), strict=True):
            entry = block["entry_id"]
            if i < 0 or pd.isna(entry) or int(entry) not in published:
                continue
            batch = cdrs[cdrs["batch_id"] == runs["batch_id"].iloc[i]]
            if kind == "SIM block":
                own = batch[batch["a_number"] == block["number"]]
            else:
                own = batch[batch["record_id"] == block["record_id"]]
            if own.empty:
                continue
            out.append({"kind": kind, "number": block["number"], "fraud_type": block["fraud_type"],
                        "latency_s": published[int(entry)] - own["landed_at"].min()})
    return pd.DataFrame(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", required=True, type=Path, help="canonical CDR Parquet folder")
    parser.add_argument("--day", required=True, help="the UTC day of the CDRs to replay (YYYY-MM-DD)")
    parser.add_argument("--home", required=True, type=Path, help="SIMGuard home with registered champions")
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--rate", type=float, default=1000.0, help="replay rate, CDRs per second")
    parser.add_argument("--drain-s", type=float, default=90.0, help="seconds the job runs after the replay")
    parser.add_argument("--trigger-s", type=float, help="the stream's trigger interval (default: the config's)")
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    extra = {"SIMGUARD_STREAM__STARTING_OFFSETS": "earliest"}
    if args.trigger_s:
        extra["SIMGUARD_STREAM__TRIGGER_INTERVAL_S"] = str(args.trigger_s)
    bench_environment(home=args.home, work=work, **extra)

    from pipeline.config import load_settings
    from pipeline.report import read_store
    from pipeline.simulate.replay import count_records, replay_to_kafka
    from pipeline.spark import build_spark
    from pipeline.stream import run_stream

    day_dir = _day_folder(args.cdrs, args.day, work)
    records = count_records(day_dir)
    replay_s = records / args.rate
    broker = start_broker(work)
    try:
        topic = use_fresh_topics(broker.bootstrap_servers, "bench.latency")
        settings = load_settings()
        spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
        # the topic exists (with the broker's partitions) before the stream subscribes to it
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.create_topics([NewTopic(topic, num_partitions=settings.local_broker.partitions, replication_factor=1)])
        admin.close()

        result: dict = {}

        def stream() -> None:
            try:
                result["summary"] = run_stream(spark, settings, available_now=False,
                                               timeout_s=replay_s + args.drain_s + 30)
            except BaseException as exc:  # reported below
                result["error"] = exc

        job = threading.Thread(target=stream, name="stream")
        job.start()
        time.sleep(30)  # the query starts and plans its first (empty) batches
        # the day ends now: every record is in the past when it is sent, at the replay's pace
        shift_to = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        started = time.monotonic()
        sent = replay_to_kafka(day_dir, topic=topic, producer_options=settings.kafka.client_options(),
                               rate=args.rate, shift_to=shift_to, live=False)
        replay_wall = time.monotonic() - started
        print(f"replayed {sent:,} CDRs in {replay_wall:.1f} s ({sent / replay_wall:,.0f}/s)", flush=True)
        job.join()
        if "error" in result:
            raise result["error"]
        from stream_runs import archived, batches, published_at

        from pipeline.stream import state_uri

        published = published_at(broker.bootstrap_servers, f"{settings.kafka.topics.blocklist_prefix}.viettel")
        store = read_store(settings.database_url)
        lat = _latencies(archived(spark, state_uri(settings)), batches(settings.database_url),
                         store["detections"], published)
    finally:
        broker.stop()

    def q(values: pd.Series) -> dict:
        return {"n": len(values), "p50": float(values.quantile(0.5)), "p95": float(values.quantile(0.95)),
                "max": float(values.max())}

    table = {kind: q(g["latency_s"]) for kind, g in lat.groupby("kind")} if len(lat) else {}
    out = {
        "command": " ".join(sys.argv), "cdrs": sent, "rate": args.rate, "replay_wall_s": round(replay_wall, 1),
        "trigger_interval_s": settings.stream.trigger_interval_s, "summary": result.get("summary"),
        "latency_s": table, "load_avg": os.getloadavg(),
    }
    (work / "bench_latency.json").write_text(json.dumps(out, indent=2, sort_keys=True, default=str))
    print(f"\nreplay {args.rate:,.0f} CDRs/s, trigger interval {settings.stream.trigger_interval_s:g} s")
    print("| decision | blocks | p50 s | p95 s | max s |\n| --- | ---: | ---: | ---: | ---: |")
    for kind, v in table.items():
        print(f"| {kind} | {v['n']:,} | {v['p50']:.1f} | {v['p95']:.1f} | {v['max']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
