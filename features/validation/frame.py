"""The frame validator: checks every record of a DataFrame, then splits it into typed valid
records and dead-lettered ones."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.schema import CDR_FIELDS, FIELD_NAMES, arrow_schema
from features.validation.rules import DEAD_LETTER_COLUMNS, ValidationResult, ValidationRules
from features.validation.text import kind_name, safe_str, show, to_text

# fullmatch everywhere below: ``$`` would let a trailing newline through
_NUMBER = re.compile(r"\+[1-9][0-9]{3,14}|[0-9]{2,8}")
_OPERATOR_KEY = re.compile(r"[a-z][a-z0-9_]*")
_IDENTIFIER_SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    # IMSI: MCC + MNC + MSIN, at most 15 digits (ITU-T E.212)
    "a_imsi": (re.compile(r"[0-9]{5,15}"), "5 to 15 digits"),
    # IMEI 15 digits, IMEISV 16; pseudonymised exports may shorten it, so 8 (a TAC) is the floor
    "a_imei": (re.compile(r"[0-9]{8,16}"), "8 to 16 digits"),
}


def _utc(value: dt.datetime) -> dt.datetime | None:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return None
    try:
        return value.astimezone(dt.UTC)
    except (OverflowError, ValueError):  # year 1 at a positive offset, year 9999 at a negative
        return None


class _Verdicts:
    """The first reason per row; later checks only look at rows that are still valid."""

    def __init__(self, n: int) -> None:
        self.code = np.full(n, None, dtype=object)
        self.reason = np.full(n, None, dtype=object)

    @property
    def ok(self) -> np.ndarray:
        return pd.isna(self.code)

    def flag_one(self, i: int, code: str, reason: str) -> None:
        if self.code[i] is None:
            self.code[i] = code
            self.reason[i] = reason

    def flag(self, mask: np.ndarray, code: str, message: Any) -> None:
        """Flag rows in ``mask`` not flagged yet; ``message(i)`` builds each one-line reason."""
        for i in np.flatnonzero(mask & self.ok):
            self.code[i] = code
            self.reason[i] = message(i) if callable(message) else message


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), None, dtype=object)
    col = df.iloc[:, list(df.columns).index(name)]  # the first one if a name repeats
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.astype(object).to_numpy()
    return col.to_numpy(dtype=object, na_value=None)


def _check_string(values: np.ndarray, present: np.ndarray, v: _Verdicts, name: str, rules: ValidationRules) -> None:
    is_str = np.fromiter((isinstance(x, str) for x in values), dtype=bool, count=len(values))
    v.flag(
        present & ~is_str,
        "bad_type",
        lambda i: f"{name}: expected a string, got {kind_name(values[i])} {show(values[i])}",
    )
    check = present & is_str
    for i in np.flatnonzero(check):
        if not values[i].isascii() and safe_str(values[i]) != values[i]:
            v.flag_one(i, "bad_encoding", f"{name}: not valid Unicode (lone surrogate) in {show(values[i])}")
    lengths = np.fromiter(
        (len(x) if c else 0 for x, c in zip(values, check, strict=True)), dtype=np.int64, count=len(values)
    )
    v.flag(
        lengths > rules.max_field_chars,
        "value_too_large",
        lambda i: f"{name}: {lengths[i]} characters, more than {rules.max_field_chars}",
    )


def _parse_timestamp(value: Any) -> tuple[dt.datetime | None, str | None]:
    """(UTC datetime, None) or (None, why not).

    An explicit offset is required: a naive time would be read in some unknown zone, and a
    one-hour error moves records across feature windows without anyone noticing.
    """
    if isinstance(value, dt.datetime):
        utc = _utc(value)
        return (utc, None) if utc is not None else (None, "has no UTC offset")
    if isinstance(value, np.datetime64):
        return None, "has no UTC offset"
    if not isinstance(value, str):
        return None, f"expected an ISO-8601 string, got {kind_name(value)}"
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return None, "is not ISO-8601 with a UTC offset (e.g. 2024-04-22T10:56:00Z)"
    utc = _utc(parsed)
    return (utc, None) if utc is not None else (None, "is out of range once converted to UTC")


def validate_frame(
    df: pd.DataFrame,
    *,
    now: dt.datetime,
    rules: ValidationRules | None = None,
    raw: Sequence[str | None] | None = None,
) -> ValidationResult:
    """Split ``df`` into typed valid records and dead-lettered ones (see the module doc).

    ``raw``, if given, is one text per row kept in the dead letter's ``raw`` column.
    Columns of ``df`` that are not canonical fields are ignored; absent ones are null.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    rules = rules or ValidationRules()
    n = len(df)
    v = _Verdicts(n)
    cols = {name: _column(df, name) for name in FIELD_NAMES}
    present = {name: ~pd.isna(cols[name]) for name in FIELD_NAMES}

    for f in CDR_FIELDS:
        if not f.nullable:
            v.flag(~present[f.name], "missing_field", f"{f.name}: required field is missing or null")
            blank = np.fromiter((isinstance(x, str) and not x.strip() for x in cols[f.name]), dtype=bool, count=n)
            v.flag(blank, "missing_field", f"{f.name}: required field is empty")

    durations = np.zeros(n, dtype=np.float64)
    times: dict[str, np.ndarray] = {}
    for f in CDR_FIELDS:
        values, here = cols[f.name], present[f.name]
        if f.kind in ("string", "enum"):
            _check_string(values, here, v, f.name, rules)
        elif f.kind == "boolean":
            is_bool = np.fromiter((isinstance(x, (bool, np.bool_)) for x in values), dtype=bool, count=n)
            v.flag(
                here & ~is_bool,
                "bad_type",
                lambda i, f=f, values=values: (
                    f"{f.name}: expected true or false, got {kind_name(values[i])} {show(values[i])}"
                ),
            )
        elif f.kind == "double":
            for i in np.flatnonzero(here & v.ok):
                x = values[i]
                if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
                    v.flag_one(i, "bad_type", f"{f.name}: expected a number, got {kind_name(x)} {show(x)}")
                    continue
                try:
                    number = float(x)
                except OverflowError:
                    v.flag_one(i, "value_too_large", f"{f.name}: {show(x)} is too large")
                    continue
                if not math.isfinite(number):
                    v.flag_one(i, "bad_type", f"{f.name}: {show(x)} is not a finite number")
                    continue
                durations[i] = number
        elif f.kind == "timestamp":
            parsed = np.full(n, None, dtype=object)
            for i in np.flatnonzero(here & v.ok):
                ts, why = _parse_timestamp(values[i])
                if ts is None:
                    v.flag_one(i, "bad_type", f"{f.name}: {show(values[i])} {why}")
                else:
                    parsed[i] = ts
            times[f.name] = parsed

    for f in CDR_FIELDS:
        if f.name in _IDENTIFIER_SHAPES:
            pattern, shape = _IDENTIFIER_SHAPES[f.name]
            values = cols[f.name]
            bad = np.fromiter(
                (
                    ok and isinstance(x, str) and not pattern.fullmatch(x)
                    for x, ok in zip(values, present[f.name] & v.ok, strict=True)
                ),
                dtype=bool,
                count=n,
            )
            v.flag(
                bad,
                "bad_type",
                lambda i, f=f, values=values, shape=shape: f"{f.name}: {show(values[i])} is not {shape}",
            )

    for f in CDR_FIELDS:
        if f.kind == "enum":
            values = cols[f.name]
            allowed_values = frozenset(f.values)
            bad = np.fromiter(
                (ok and x not in allowed_values for x, ok in zip(values, present[f.name] & v.ok, strict=True)),
                dtype=bool,
                count=n,
            )
            v.flag(
                bad,
                "bad_enum",
                lambda i, f=f, values=values: f"{f.name}: {show(values[i])} is not one of {', '.join(f.values)}",
            )
    ops = cols["operator"]
    bad_op = np.fromiter(
        (
            ok and not (_OPERATOR_KEY.fullmatch(x) and (rules.operators is None or x in rules.operators))
            for x, ok in zip(ops, v.ok, strict=True)
        ),
        dtype=bool,
        count=n,
    )
    allowed = "a lower-case key" if rules.operators is None else "one of " + ", ".join(sorted(rules.operators))
    v.flag(bad_op, "bad_enum", lambda i: f"operator: {show(ops[i])} is not {allowed}")

    for name in ("a_number", "b_number"):
        values = cols[name]
        bad = np.fromiter(
            (ok and not _NUMBER.fullmatch(x) for x, ok in zip(values, v.ok, strict=True)), dtype=bool, count=n
        )
        v.flag(
            bad,
            "bad_e164",
            lambda i, name=name, values=values: (
                f"{name}: {show(values[i])} is not E.164 (+ and 4-15 digits) nor a short code"
            ),
        )

    v.flag(durations < 0, "negative_duration", lambda i: f"duration_s: {durations[i]:g} is negative")
    v.flag(
        durations > rules.max_duration_s,
        "value_too_large",
        lambda i: f"duration_s: {durations[i]:g} s is more than {rules.max_duration_s:g} s",
    )

    now_utc = now.astimezone(dt.UTC)
    oldest = rules.earliest_time.astimezone(dt.UTC)
    try:
        oldest = max(oldest, now_utc - dt.timedelta(days=rules.max_past_days))
    except OverflowError:  # an age limit reaching before year 1: the floor decides alone
        pass
    try:
        latest = now_utc + dt.timedelta(seconds=rules.max_future_s)
    except OverflowError:
        latest = dt.datetime.max.replace(tzinfo=dt.UTC)
    for name, parsed in times.items():
        old = np.fromiter((t is not None and t < oldest for t in parsed), dtype=bool, count=n)
        v.flag(
            old,
            "time_too_old",
            lambda i, name=name, parsed=parsed: f"{name}: {parsed[i].isoformat()} is before {oldest.isoformat()}",
        )
        new = np.fromiter((t is not None and t > latest for t in parsed), dtype=bool, count=n)
        v.flag(
            new,
            "time_in_future",
            lambda i, name=name, parsed=parsed: f"{name}: {parsed[i].isoformat()} is after {latest.isoformat()}",
        )

    start, answer = times["start_time"], times["answer_time"]
    early = np.fromiter(
        (a is not None and s is not None and a < s for s, a in zip(start, answer, strict=True)), dtype=bool, count=n
    )
    v.flag(
        early,
        "answer_before_start",
        lambda i: f"answer_time {answer[i].isoformat()} is before start_time {start[i].isoformat()}",
    )

    def equals(name: str, text: str) -> np.ndarray:
        # element by element: a numpy ``==`` on objects of any kind can broadcast or raise
        return np.fromiter((isinstance(x, str) and x == text for x in cols[name]), dtype=bool, count=n)

    answered = equals("release_cause", "answered")
    has_answer = np.fromiter((a is not None for a in answer), dtype=bool, count=n)
    is_sms = equals("event_type", "sms")
    is_voice = equals("event_type", "voice")
    v.flag(answered & ~has_answer, "duration_inconsistent", "release_cause is answered but answer_time is null")
    v.flag(
        ~answered & has_answer,
        "duration_inconsistent",
        lambda i: f"release_cause is {cols['release_cause'][i]} but answer_time is set",
    )
    v.flag(
        ~answered & (durations > 0),
        "duration_inconsistent",
        lambda i: f"release_cause is {cols['release_cause'][i]} but duration_s is {durations[i]:g}",
    )
    v.flag(is_voice & answered & (durations == 0), "duration_inconsistent", "an answered voice call has duration_s 0")
    v.flag(
        is_sms & (durations != 0),
        "duration_inconsistent",
        lambda i: f"an SMS has duration_s {durations[i]:g} (must be 0)",
    )

    ok = v.ok
    return ValidationResult(
        valid=_typed(cols, present, times, durations, ok, df.index),
        dead=_dead(cols, v, ~ok, df.index, raw),
    )


def _typed(
    cols: dict[str, np.ndarray],
    present: dict[str, np.ndarray],
    times: dict[str, np.ndarray],
    durations: np.ndarray,
    ok: np.ndarray,
    index: pd.Index,
) -> pd.DataFrame:
    out: dict[str, Any] = {}
    for f in CDR_FIELDS:
        if f.kind == "timestamp":
            # the window checks keep times in [2000, now + skew], well inside the ns range
            stamps = pd.to_datetime([pd.NaT if t is None else t for t in times[f.name][ok]], utc=True)
            out[f.name] = pd.Series(stamps, index=index[ok]).astype("datetime64[us, UTC]")
        elif f.kind == "double":
            out[f.name] = durations[ok].astype(np.float64)
        elif f.kind == "boolean":
            out[f.name] = np.array([bool(x) for x in cols[f.name][ok]], dtype=bool)
        else:
            # valid rows hold a str or a null (None, NaN, NA); make every null None
            values = cols[f.name][ok].copy()
            values[~present[f.name][ok]] = None
            out[f.name] = values
    return pd.DataFrame(out, index=index[ok], columns=list(FIELD_NAMES))


def _dead(
    cols: dict[str, np.ndarray],
    v: _Verdicts,
    bad: np.ndarray,
    index: pd.Index,
    raw: Sequence[str | None] | None,
) -> pd.DataFrame:
    out: dict[str, Any] = {name: [to_text(x) for x in cols[name][bad]] for name in FIELD_NAMES}
    out["raw"] = [raw[i] for i in np.flatnonzero(bad)] if raw is not None else [None] * int(bad.sum())
    out["reason_code"] = list(v.code[bad])
    out["reason"] = list(v.reason[bad])
    return pd.DataFrame(out, index=index[bad], columns=list(DEAD_LETTER_COLUMNS), dtype=object)


def valid_to_arrow(valid: pd.DataFrame) -> pa.Table:
    """The ``valid`` frame as an Arrow table with exactly ``arrow_schema()``."""
    schema = arrow_schema()
    table = pa.Table.from_pandas(valid, schema=schema, preserve_index=False)
    # drop the pandas metadata so the file schema is exactly the contract's
    return table.replace_schema_metadata(schema.metadata)
