"""One decision per SIM and micro-batch: the earliest row above its own threshold."""

from __future__ import annotations

import pandas as pd

from streaming.scoring import first_decisive_rows


def test_the_first_row_above_its_own_threshold_decides() -> None:
    """A SIM's cold rows (window reaching before the stream's first record) carry the stricter
    threshold: an earlier cold row above the warm threshold does not decide, a later warm row
    above it does; a SIM with no row above its threshold gives its best-scoring row."""
    t = pd.Timestamp("2025-03-05T00:00")
    rows = pd.DataFrame({
        "entity": ["+84961000001"] * 3 + ["+84961000002"] * 2,
        "window_end": [t + pd.Timedelta(minutes=m) for m in (1, 2, 3, 1, 2)],
        "score": [0.5, 0.9, 0.4, 0.6, 0.7],
        "model_threshold": [0.99, 0.99, 0.01, 0.99, 0.99],
    })
    got = first_decisive_rows(rows).set_index("entity")
    assert got.loc["+84961000001", "window_end"] == t + pd.Timedelta(minutes=3)
    assert got.loc["+84961000002", "window_end"] == t + pd.Timedelta(minutes=2)
    assert len(got) == 2
