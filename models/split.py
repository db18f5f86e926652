"""Split by time: train on earlier days, validate on the next, test on the last.

Rows are assigned by the time they are scored (a SIM row's ``window_end``, its scoring time; a
call's start). A SIM row covers only the trailing window before that time, so no training or
validation feature has seen a later split's CDRs; a row scored exactly at midnight belongs to the
day that ends there. Rows that start before their split (a test row's window reaches back into
the validation day) read earlier CDRs only, as the stream does.

>>> import pandas as pd
>>> t = pd.to_datetime(["2025-01-01 06:00", "2025-01-02 00:00", "2025-01-02 12:00",
...                     "2025-01-03 00:01"], utc=True)
>>> frame = pd.DataFrame({"row_start": t - pd.Timedelta(hours=24), "row_end": t})
>>> b = day_boundaries(scored_at(frame).max(), validation_days=1, test_days=1)
>>> s = time_split(frame, b)
>>> len(s.train), len(s.validation), len(s.test)  # midnight closes day 1
(2, 1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from models.dataset import ROW_END, ROW_START
from models.errors import ModelError

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Boundaries:
    """Split boundaries (UTC midnights): ``[.., validation_start)`` trains,
    ``[validation_start, test_start)`` validates, ``[test_start, test_end)`` tests."""

    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in vars(self).items()}


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def day_boundaries(last_time: pd.Timestamp, *, validation_days: int, test_days: int) -> Boundaries:
    """Boundaries that put the ``test_days`` ending with ``last_time``'s day in the test set."""
    ts = pd.Timestamp(last_time)
    last_day = (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).floor("D")
    test_start = last_day - (test_days - 1) * DAY
    return Boundaries(
        validation_start=test_start - validation_days * DAY,
        test_start=test_start,
        test_end=last_day + DAY,
    )


def scored_at(frame: pd.DataFrame) -> pd.Series:
    """When each row is scored, as the split counts it: just before ``row_end`` for rows that
    cover a window, ``row_start`` for calls."""
    start, end = frame[ROW_START], frame[ROW_END]
    return start.where(end <= start, end - pd.Timedelta(microseconds=1))


def time_split(frame: pd.DataFrame, boundaries: Boundaries) -> Split:
    """Assign rows by the time they are scored: ``row_end`` for rows that cover a window (a row
    ending exactly at a boundary belongs to the split before it), ``row_start`` for calls."""
    b = boundaries
    at = scored_at(frame)
    in_train = at < b.validation_start
    keep_train = in_train
    keep_val = (at >= b.validation_start) & (at < b.test_start)
    in_test = (at >= b.test_start) & (at < b.test_end)
    split = Split(
        train=frame[keep_train].reset_index(drop=True),
        validation=frame[keep_val].reset_index(drop=True),
        test=frame[in_test].reset_index(drop=True),
    )
    for name in ("train", "validation", "test"):
        if getattr(split, name).empty:
            raise ModelError(
                f"the {name} split is empty (boundaries {b.as_dict()}): the CDRs need at least "
                "validation_days + test_days + 1 days"
            )
    return split
