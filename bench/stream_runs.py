"""What a stream run left behind, read back for the streaming benchmarks: its micro-batches
(when each was planned and had published its decisions), the validated CDRs with their Kafka
timestamps, and which validated files each micro-batch of a query read."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def batches(state: Path, query: str) -> pd.DataFrame:
    """Per micro-batch of ``query``: ``planned_at`` (the mtime of its offset log file, written
    when Spark planned it) and ``published_at`` (``finished_at`` of its batch record: after the
    store write, the Kafka publication and the webhook deliveries), epoch seconds. Spark keeps
    the offset files of the last 100 batches only (``spark.sql.streaming.minBatchesToRetain``);
    for an older batch ``planned_at`` is when its batch function started (``finished_at`` minus
    its ``duration_s``), a little after the plan."""
    rows = []
    for path in sorted((state / "batches" / query).glob("*.json")):
        record = json.loads(path.read_text())
        offsets = state / "checkpoints" / query / "offsets" / str(record["batch_id"])
        planned = offsets.stat().st_mtime if offsets.exists() else record["finished_at"] - record["duration_s"]
        rows.append({"batch_id": record["batch_id"], "planned_at": planned, "published_at": record["finished_at"]})
    return pd.DataFrame(rows, columns=["batch_id", "planned_at", "published_at"]).sort_values("batch_id")


def deciding_batch(created_at: pd.Series, runs: pd.DataFrame) -> np.ndarray:
    """Position in ``runs`` of the micro-batch that stored each decision (the last one planned
    before it; a query runs its micro-batches one after the other); -1 if none."""
    seconds = pd.to_datetime(created_at, utc=True).astype("int64").to_numpy() / 1e9
    return np.searchsorted(runs["planned_at"].to_numpy(), seconds, side="right") - 1


def source_files(state: Path, query: str) -> pd.DataFrame:
    """The validated files each micro-batch of ``query`` read (its file source's log)."""
    rows = []
    for path in (state / "checkpoints" / query / "sources" / "0").glob("*"):
        if not path.name.split(".")[0].isdigit():
            continue
        for line in path.read_text().splitlines()[1:]:  # first line: the log version
            entry = json.loads(line)
            rows.append({"file": Path(entry["path"].removeprefix("file://")).name, "batch_id": entry["batchId"]})
    return pd.DataFrame(rows, columns=["file", "batch_id"]).drop_duplicates("file")


def event_horizon(state: Path, query: str) -> pd.Series:
    """Per micro-batch id of ``query``: the newest event time (``start_time``) among the validated
    records it and the batches before it had read."""
    read = validated(state).merge(source_files(state, query), on="file")
    return read.groupby("batch_id")["start_time"].max().sort_index().cummax()


def validated(state: Path) -> pd.DataFrame:
    """Every valid record of the validated table: record id, calling number, event time, Kafka
    timestamp (``landed_at``), its file and when the file was written (``visible_at``)."""
    frames = []
    for path in (state / "validated").glob("*.parquet"):
        t = pq.read_table(path, columns=["record_id", "a_number", "start_time", "_valid", "source_timestamp"])
        frame = t.to_pandas()
        frame["file"] = path.name
        frame["visible_at"] = path.stat().st_mtime
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True).sort_values("visible_at", kind="stable")
    # a micro-batch re-run after a crash writes its rows again: the first write is when they landed
    out = out[out["_valid"]].drop(columns="_valid").drop_duplicates("record_id", keep="first")
    out["start_time"] = pd.to_datetime(out["start_time"], utc=True)
    out["landed_at"] = pd.to_datetime(out["source_timestamp"], utc=True).astype("int64") / 1e9
    return out


def bench_environment(*, home: Path, work: Path, **settings: str) -> None:
    """The settings a benchmark's stream run shares, as environment overrides: the champions of
    ``home``, its state, blocklist database and nothing on the metrics port under ``work``."""
    os.environ.update({
        "SIMGUARD_HOME": str(home.resolve()),
        "SIMGUARD_STREAM__STATE_DIR": str(work / "stream"),
        "SIMGUARD_DATABASE__URL": f"sqlite:///{work / 'blocklist.db'}",
        "SIMGUARD_STREAM__METRICS_PORT": "0",
        **settings,
    })


def start_broker(work: Path):
    """A local KRaft broker on free ports, its data under ``work``."""
    from pipeline.broker import LocalBroker, free_port
    from pipeline.config import load_settings

    settings = load_settings()
    broker = LocalBroker(home=work / "kafka", jars_dir=settings.jars_dir, port=free_port(),
                         controller_port=free_port(), settings=settings.local_broker)
    broker.start()
    return broker


def use_fresh_topics(bootstrap: str, prefix: str) -> str:
    """Point the settings at ``bootstrap`` and at new topic names; returns the CDR topic."""
    topic = f"{prefix}.{int(time.time())}"
    os.environ.update({
        "SIMGUARD_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SIMGUARD_KAFKA__TOPICS__CDRS": topic,
        "SIMGUARD_KAFKA__TOPICS__DEAD_LETTER": f"{topic}.dead-letter",
        "SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX": f"{topic}.blocklist",
    })
    return topic
