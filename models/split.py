"""Split by time: train on earlier days, validate on the next, test on the last.

Rows are assigned by the day their features start (a SIM window's ``window_start``, a call's
start). A 24 h window sliding every 6 h that starts late on a training day still covers hours of
the validation day: such rows are purged (dropped) from training, and validation rows that reach
into the test days likewise, so no training or validation feature has seen a later split's CDRs
(cf. the Fraud-Detection-Handbook's ``delta_delay``).

>>> import pandas as pd
>>> t = pd.to_datetime(["2025-01-01 00:00", "2025-01-01 12:00", "2025-01-02 00:00",
...                     "2025-01-03 00:00"], utc=True)
>>> frame = pd.DataFrame({"row_start": t, "row_end": t + pd.Timedelta(hours=24)})
>>> b = day_boundaries(frame["row_start"].max(), validation_days=1, test_days=1)
>>> s = time_split(frame, b)
>>> len(s.train), len(s.validation), len(s.test)  # the 12:00 window reaches into day 2
(1, 1, 1)
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
    #: rows dropped because their window reaches into a later split
    purged: int


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


def time_split(frame: pd.DataFrame, boundaries: Boundaries) -> Split:
    """Assign rows by ``row_start`` and purge rows whose ``row_end`` reaches a later split."""
    start, end = frame[ROW_START], frame[ROW_END]
    b = boundaries
    in_train = start < b.validation_start
    in_val = (start >= b.validation_start) & (start < b.test_start)
    in_test = (start >= b.test_start) & (start < b.test_end)
    keep_train = in_train & (end <= b.validation_start)
    keep_val = in_val & (end <= b.test_start)
    purged = int((in_train & ~keep_train).sum() + (in_val & ~keep_val).sum())
    split = Split(
        train=frame[keep_train].reset_index(drop=True),
        validation=frame[keep_val].reset_index(drop=True),
        test=frame[in_test].reset_index(drop=True),
        purged=purged,
    )
    for name in ("train", "validation", "test"):
        if getattr(split, name).empty:
            raise ModelError(
                f"the {name} split is empty (boundaries {b.as_dict()}): the CDRs need at least "
                "validation_days + test_days + 1 days"
            )
    return split
