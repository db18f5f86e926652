"""One decision per SIM and micro-batch: the earliest row above its own block threshold; and
where a scorer's history starts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.scoring import history_start, history_starts, reaches_before
from streaming.scoring import first_decisive_rows

T = pd.Timestamp("2025-03-05T00:00")


def _rows() -> pd.DataFrame:
    return pd.DataFrame({
        "entity": ["+84961000001"] * 3 + ["+84961000002"] * 2,
        "window_end": [T + pd.Timedelta(minutes=m) for m in (1, 2, 3, 1, 2)],
        "score": [0.5, 0.9, 0.4, 0.6, 0.7],
        "model_threshold": [0.99, 0.99, 0.01, 0.99, 0.99],
    })


def test_the_first_row_above_its_own_threshold_decides() -> None:
    """A SIM's cold rows (window reaching before the stream's first record) carry the stricter
    threshold: an earlier cold row above the warm threshold does not decide, a later warm row
    above it does; a SIM with no row above its threshold gives its best-scoring row."""
    rows = _rows()
    got = first_decisive_rows(rows, rows["model_threshold"].to_numpy()).set_index("entity")
    assert got.loc["+84961000001", "window_end"] == T + pd.Timedelta(minutes=3)
    assert got.loc["+84961000002", "window_end"] == T + pd.Timedelta(minutes=2)
    assert len(got) == 2
    assert list(got.columns) == ["window_end", "score", "model_threshold"]


def test_a_fixed_block_above_decides_over_the_model_thresholds() -> None:
    """With the policy's fixed block_above (0.8 for every row), the row above it decides, not
    the later one above its model threshold."""
    got = first_decisive_rows(_rows(), np.full(5, 0.8)).set_index("entity")
    assert got.loc["+84961000001", "window_end"] == T + pd.Timedelta(minutes=2)


def test_history_starts_after_the_last_gap_of_a_window_or_more() -> None:
    day, hour = 86400.0, 3600.0
    assert history_start(np.array([]), reach_s=day) is None
    # a warm day and the first hours after it: one history, from its first minute
    assert history_start(np.array([3 * hour, 20 * hour, 26 * hour, 27 * hour]), reach_s=day) == 3 * hour
    # a straggler three days before the rest: the history starts after it
    assert history_start(np.array([0.0, 3 * day, 3 * day + 60, 3 * day]), reach_s=day) == 3 * day
    # exactly a window apart: no window holds both minutes
    assert history_start(np.array([0.0, day, day + 60]), reach_s=day) == day
    assert history_starts(np.array([0.0, 60.0, 3 * day, 5 * day]), reach_s=day).tolist() == [0.0, 3 * day, 5 * day]


def test_each_row_counts_from_the_start_of_its_own_run_of_records() -> None:
    """Scoring a folder of two days far apart: each day's first window reaches before its own
    run's start (cold); a window inside the earlier day is whole, although the later run starts
    after it."""
    day1, day5 = pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2025-03-05", tz="UTC")
    ends = [day1 + pd.Timedelta(minutes=1), day1 + pd.Timedelta(days=1), day5 + pd.Timedelta(minutes=1)]
    frame = pd.DataFrame({"window_end": ends, "window_start": [e - pd.Timedelta(days=1) for e in ends]})
    starts = pd.DatetimeIndex([day1, day5])
    assert reaches_before(frame, starts).tolist() == [True, False, True]
    # one minute: every window that starts before it
    assert reaches_before(frame, day5).tolist() == [True, True, True]
    assert reaches_before(frame, day1).tolist() == [True, False, False]
