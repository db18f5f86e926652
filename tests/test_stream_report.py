"""``pipeline.report``'s counting on hand-made data (unit tier: no Spark, no Kafka, no database):
ground truth from labels and streamed CDRs, flagged units from detections, precision, recall and
detection delay. The end-to-end use (``simguard report`` on a real stream run) is in
tests/test_stream_e2e.py."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.report import (
    block_detections,
    day_files,
    detection_delays,
    flagged_by_stream,
    ground_truth,
    precision_recall,
)

DAY = pd.Timestamp("2025-03-05", tz="UTC")
ROBO, SIMBOX, LATE, IDLE, AGENT, NOBODY = (
    "+84961000001", "+84961000002", "+84961000003", "+84961000004", "+84961000005", "+84961000006"
)


def _cdr(record_id: str, a: str, minute: float, event: str = "voice") -> dict:
    return {"record_id": record_id, "a_number": a, "b_number": "+84961999999",
            "start_time": DAY + pd.Timedelta(minutes=minute), "event_type": event}


@pytest.fixture
def sim(tmp_path: Path) -> Path:
    """Two days of CDRs; only the last is 'streamed'. ROBO calls every 10 minutes from 01:00 (its
    fraud started the day before), SIMBOX from 03:00, LATE's fraud starts at 23:00 but it only
    called before, IDLE (fraud) never calls, AGENT is a normal SIM."""
    rows = [_cdr(f"R{i}", ROBO, 60 + 10 * i) for i in range(60)]
    rows += [_cdr(f"S{i}", SIMBOX, 180 + 10 * i) for i in range(30)] + [_cdr("Ssms", SIMBOX, 200, "sms")]
    rows += [_cdr("L0", LATE, 30), _cdr("A0", AGENT, 100), _cdr("SPOOF1", AGENT, 101), _cdr("SPOOF2", AGENT, 102)]
    for day, frame in (("2025-03-04", pd.DataFrame([_cdr("OLD", ROBO, -600)])), ("2025-03-05", pd.DataFrame(rows))):
        folder = tmp_path / "cdrs" / f"day={day}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "part-00000.parquet")
    labels = tmp_path / "labels"
    labels.mkdir()
    pd.DataFrame({
        "a_number": [ROBO, SIMBOX, LATE, IDLE, AGENT],
        "label": ["spam_robocall", "simbox", "wangiri", "simbox", "normal"],
        "population": ["robocall", "simbox", "wangiri", "simbox", "call_centre"],
        "activity_start": [DAY - pd.Timedelta(days=1), DAY + pd.Timedelta(hours=3), DAY + pd.Timedelta(hours=23),
                           DAY, DAY - pd.Timedelta(days=900)],
    }).to_parquet(labels / "sims.parquet")
    pd.DataFrame({"record_id": ["SPOOF1", "SPOOF2", "OLD"], "spoofed": [True, True, True],
                  "spoof_kind": ["x", "x", "x"]}).to_parquet(labels / "calls.parquet")
    return tmp_path


def _detection(number: str, outcome: str, fraud_type: str, key: str, observed: pd.Timestamp,
               score: float = 0.99) -> dict:
    return {"number": number, "outcome": outcome, "fraud_type": fraud_type, "idempotency_key": key,
            "observed_at": observed, "score": score}


def _sim_key(number: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    return f"sim@q:3:sim:all|{number}@{start.isoformat()}/{end.isoformat()}"


def test_ground_truth_roles_come_from_labels_and_the_streamed_period(sim: Path) -> None:
    files = day_files(sim, last_days=1)
    assert [p.parent.name for p in files] == ["day=2025-03-05"]
    truth = ground_truth(sim / "labels", files)
    roles = truth.sims["role"].to_dict()
    assert roles == {ROBO: "positive", SIMBOX: "positive", LATE: "excluded", IDLE: "excluded", AGENT: "negative"}
    assert truth.sims.loc[SIMBOX, "first_fraud_at"] == DAY + pd.Timedelta(hours=3)
    # the spoofed call of a day that was not streamed is not a positive of this period
    assert set(truth.calls.index) == {"SPOOF1", "SPOOF2"}
    assert truth.records == 95 and truth.start == DAY + pd.Timedelta(minutes=30)


def test_ground_truth_of_a_window_after_loaded_history(sim: Path) -> None:
    # 02:00 to 05:00 streamed, the day before it loaded as history: ROBO's fraud began before the
    # window (excluded), AGENT, LATE and the spoofed calls are only in the history
    files = day_files(sim, last_days=1)
    truth = ground_truth(sim / "labels", files, since=DAY + pd.Timedelta(hours=2), before=DAY + pd.Timedelta(hours=5))
    assert truth.sims["role"].to_dict() == {ROBO: "excluded", SIMBOX: "positive"}
    assert truth.sims.loc[SIMBOX, "first_fraud_at"] == DAY + pd.Timedelta(hours=3)
    assert truth.calls.empty
    assert truth.records == 31 and truth.start == DAY + pd.Timedelta(hours=2)


def test_flagged_units_precision_recall_and_delay(sim: Path) -> None:
    truth = ground_truth(sim / "labels", day_files(sim, last_days=1))
    six, twelve = DAY + pd.Timedelta(hours=6), DAY + pd.Timedelta(hours=12)
    detections = pd.DataFrame([
        # ROBO: blocked on the window seen at 12:00, and already blocked on the one seen at 06:00
        _detection(ROBO, "blocked", "spam_robocall", _sim_key(ROBO, DAY, twelve), twelve),
        _detection(ROBO, "already_blocked", "spam_robocall", _sim_key(ROBO, DAY, six), six),
        _detection(SIMBOX, "review", "simbox", _sim_key(SIMBOX, DAY, six), six, 0.7),  # not a block
        _detection(AGENT, "blocked", "spam_robocall", _sim_key(AGENT, DAY, six), six),  # a false positive
        _detection(LATE, "blocked", "wangiri", _sim_key(LATE, DAY, six), six),  # excluded: counts neither way
        _detection("113", "allowed", "spam_robocall", _sim_key("113", DAY, six), six),
        _detection(AGENT, "blocked", "spoofed_call", "calls@q:1:call:trunk:gw|+8496@viettel/T1/SPOOF1", six),
        _detection(AGENT, "blocked", "spoofed_call", "calls@q:1:call:trunk:gw|+8496@viettel/T1/A0", six, 0.5),
    ])
    sims, calls = flagged_by_stream(detections)
    assert sims == {ROBO, AGENT, LATE} and calls == {"SPOOF1", "A0"}
    pr = precision_recall(sims, truth.sims)
    assert (pr["tp"], pr["fp"], pr["fn"]) == (1, 1, 1) and pr["precision"] == 0.5 and pr["recall"] == 0.5
    assert precision_recall(calls, truth.calls) == {"tp": 1, "fp": 1, "fn": 1, "precision": 0.5, "recall": 0.5}
    assert math.isnan(precision_recall(set(), truth.calls)["precision"])

    # evaluate's units: rows scored after a time, scores above the model threshold
    later, _ = flagged_by_stream(detections, observed_after=six)
    assert later == {ROBO}
    earlier, _ = flagged_by_stream(detections, observed_after=six - pd.Timedelta(minutes=1))
    assert earlier == sims
    high_sims, high_calls = flagged_by_stream(detections, sim_threshold=0.9, call_threshold=0.9)
    assert high_sims == sims and high_calls == {"SPOOF1"}

    # delay: from ROBO's first fraudulent call in the period (01:00) to its earliest block-level
    # detection (06:00), and its voice calls meanwhile (01:00, 01:10, ... 05:50)
    sim_blocks, _ = block_detections(detections)
    delays = detection_delays(sim_blocks, truth)
    assert list(delays.index) == [ROBO]
    assert delays.loc[ROBO, "minutes"] == 300 and delays.loc[ROBO, "calls"] == 30
