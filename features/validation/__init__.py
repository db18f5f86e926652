"""Per-record validation of canonical CDRs, defined once for batch and streaming.

:func:`validate_frame` checks a pandas DataFrame whose columns are the canonical field names
(values as they arrived: strings, numbers, booleans, datetimes) and splits it into

- ``valid``: typed exactly as :func:`features.schema.arrow_schema` (strings, ``float64``
  durations, ``bool``, ``datetime64[us, UTC]`` timestamps), columns in ``FIELD_NAMES`` order;
- ``dead``: the offending records, every field kept as text (nothing is lost), plus ``raw``
  (the whole original value where there was one, e.g. the Kafka bytes as text), ``reason_code``
  (one of :data:`REASON_CODES`) and ``reason`` (one line naming the field and the value).

Both keep the input's index, so a caller can join back metadata (a Kafka offset, a CSV line).
Batch ingest (``pipeline.ingest``) calls it directly; the streaming job applies
:func:`validate_json_values` to each micro-batch of Kafka values through ``mapInPandas``.

Every check looks at one record only, so the result does not depend on row order, and
``len(valid) + len(dead) == len(input)`` on any input: no value makes these functions raise.

A record gets the first reason that applies, in this order:

``bad_encoding``  raw bytes are not UTF-8, or a string holds a lone surrogate (unwritable);
``value_too_large``  a raw value above ``max_value_bytes`` (checked before parsing);
``bad_json``      not a JSON object (syntax error, NaN/Infinity, nesting too deep, an array);
``unknown_field`` a JSON key outside the contract (the JSON Schema forbids extra properties);
``missing_field`` a required field absent, null or blank;
``bad_type``      a value of the wrong type (a JSON number for a string field, a string for
                  ``duration_s``, a timestamp without a UTC offset, a non-finite duration), or
                  an identifier of the wrong shape (IMSI: 5-15 digits, IMEI: 8-16 digits);
``value_too_large`` a string longer than ``max_field_chars``;
``bad_enum``      ``event_type``/``release_cause``/``in_trunk_type`` outside the contract, or an
                  ``operator`` that is not a lower-case key (or not in ``rules.operators``);
``bad_e164``      ``a_number``/``b_number`` neither E.164 (``+`` and 4-15 digits) nor a bare
                  short code (2-8 digits, e.g. "113", "5656");
``negative_duration``  ``duration_s < 0``;
``value_too_large`` ``duration_s > max_duration_s``;
``time_too_old``  a timestamp before ``earliest_time`` or more than ``max_past_days`` before now;
``time_in_future`` a timestamp more than ``max_future_s`` after now;
``answer_before_start`` ``answer_time < start_time``;
``duration_inconsistent`` the outcome fields disagree. Precisely, any of:
    (1) ``release_cause == "answered"`` and ``answer_time`` is null;
    (2) ``release_cause != "answered"`` and ``answer_time`` is set;
    (3) ``release_cause != "answered"`` and ``duration_s > 0``;
    (4) a voice call ``"answered"`` with ``duration_s == 0``;
    (5) an SMS with ``duration_s != 0`` (an SMS has no conversation time).

A number's *allocation* is not checked here: an unallocated or premium CLI is evidence for the
spoofing and Wangiri detectors (``features.numbering``), so it must reach them, not the dead
letter. ``duplicate_record`` is reserved for callers that deduplicate (batch ingest does, per
file); it is not a per-record check.

>>> import datetime as dt
>>> res = validate_json_values([b"{", b"\\xff"], now=dt.datetime.now(dt.UTC))
>>> list(res.dead["reason_code"])
['bad_json', 'bad_encoding']
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from features.schema import CDR_FIELDS, FIELD_NAMES, FIELDS_BY_NAME, arrow_schema

ReasonCode = Literal[
    "bad_encoding",
    "bad_json",
    "unknown_field",
    "missing_field",
    "bad_type",
    "value_too_large",
    "bad_enum",
    "bad_e164",
    "negative_duration",
    "time_too_old",
    "time_in_future",
    "answer_before_start",
    "duration_inconsistent",
    "malformed_row",
    "duplicate_record",
]
REASON_CODES: tuple[str, ...] = (
    "bad_encoding",
    "bad_json",
    "unknown_field",
    "missing_field",
    "bad_type",
    "value_too_large",
    "bad_enum",
    "bad_e164",
    "negative_duration",
    "time_too_old",
    "time_in_future",
    "answer_before_start",
    "duration_inconsistent",
    # used by batch ingest only: a CSV line with the wrong number of columns, a repeated id
    "malformed_row",
    "duplicate_record",
)
#: columns of a dead-letter frame: every canonical field as text, then the whole raw value
DEAD_LETTER_COLUMNS: tuple[str, ...] = (*FIELD_NAMES, "raw", "reason_code", "reason")

# fullmatch everywhere below: ``$`` would let a trailing newline through
_NUMBER = re.compile(r"\+[1-9][0-9]{3,14}|[0-9]{2,8}")
_OPERATOR_KEY = re.compile(r"[a-z][a-z0-9_]*")
_IDENTIFIER_SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    # IMSI: MCC + MNC + MSIN, at most 15 digits (ITU-T E.212)
    "a_imsi": (re.compile(r"[0-9]{5,15}"), "5 to 15 digits"),
    # IMEI 15 digits, IMEISV 16; pseudonymised exports may shorten it, so 8 (a TAC) is the floor
    "a_imei": (re.compile(r"[0-9]{8,16}"), "8 to 16 digits"),
}
_SHOW_CHARS = 40


class ValidationRules(BaseModel):
    """Limits for per-record validation (a section of the settings; frozen at run time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: records older than this are dead-lettered (live traffic: a late record is an old one)
    max_past_days: float = Field(30.0, gt=0)
    #: tolerated clock skew of the reporting switches
    max_future_s: float = Field(900.0, ge=0)
    #: absolute floor whatever ``max_past_days`` says (a 1970 time is an unset clock)
    earliest_time: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    #: one day: longer calls are cut into several records by the switch
    max_duration_s: float = Field(86400.0, gt=0)
    max_field_chars: int = Field(64, ge=8)
    #: a whole raw value (one Kafka message); larger ones are not even parsed
    max_value_bytes: int = Field(65536, ge=1024)
    #: allowed ``operator`` keys; ``None`` accepts any lower-case key
    operators: frozenset[str] | None = None


@dataclass(frozen=True)
class ValidationResult:
    valid: pd.DataFrame
    dead: pd.DataFrame

    def reason_counts(self) -> dict[str, int]:
        """Dead-lettered records per reason code (codes that did not occur are left out)."""
        counts = self.dead["reason_code"].value_counts()
        return {str(k): int(v) for k, v in counts.items()}


# -- helpers ----------------------------------------------------------------------------------


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _safe_str(text: str) -> str:
    """``text`` encodable as UTF-8 (lone surrogates become ``\\udcxx`` escapes)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def to_text(value: Any) -> str | None:
    """A raw value as text for the dead letter: nothing lost, always writable as UTF-8."""
    if _is_null(value):
        return None
    if isinstance(value, str):
        return _safe_str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (int, np.integer)):
        try:
            return str(int(value))
        except ValueError:  # more digits than int->str conversion allows
            return f"<integer of about {int(value).bit_length() * 0.30103:.0f} digits>"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    try:
        return _safe_str(json.dumps(value, ensure_ascii=False, default=repr))
    except (ValueError, TypeError, RecursionError):
        return _safe_str(repr(value))


def _show(value: Any) -> str:
    text = to_text(value)
    if text is None:
        return "null"
    shown = text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + f"... ({len(text)} chars)"
    return repr(shown)


def _kind_name(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array even when the items are lists (``np.array`` would nest them)."""
    out = np.empty(len(values), dtype=object)
    for i, x in enumerate(values):
        out[i] = x
    return out


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


# -- the frame validator -------------------------------------------------------------------


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
        lambda i: f"{name}: expected a string, got {_kind_name(values[i])} {_show(values[i])}",
    )
    check = present & is_str
    for i in np.flatnonzero(check):
        if not values[i].isascii() and _safe_str(values[i]) != values[i]:
            v.flag_one(i, "bad_encoding", f"{name}: not valid Unicode (lone surrogate) in {_show(values[i])}")
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
        return None, f"expected an ISO-8601 string, got {_kind_name(value)}"
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
                    f"{f.name}: expected true or false, got {_kind_name(values[i])} {_show(values[i])}"
                ),
            )
        elif f.kind == "double":
            for i in np.flatnonzero(here & v.ok):
                x = values[i]
                if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
                    v.flag_one(i, "bad_type", f"{f.name}: expected a number, got {_kind_name(x)} {_show(x)}")
                    continue
                try:
                    number = float(x)
                except OverflowError:
                    v.flag_one(i, "value_too_large", f"{f.name}: {_show(x)} is too large")
                    continue
                if not math.isfinite(number):
                    v.flag_one(i, "bad_type", f"{f.name}: {_show(x)} is not a finite number")
                    continue
                durations[i] = number
        elif f.kind == "timestamp":
            parsed = np.full(n, None, dtype=object)
            for i in np.flatnonzero(here & v.ok):
                ts, why = _parse_timestamp(values[i])
                if ts is None:
                    v.flag_one(i, "bad_type", f"{f.name}: {_show(values[i])} {why}")
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
                lambda i, f=f, values=values, shape=shape: f"{f.name}: {_show(values[i])} is not {shape}",
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
                lambda i, f=f, values=values: f"{f.name}: {_show(values[i])} is not one of {', '.join(f.values)}",
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
    v.flag(bad_op, "bad_enum", lambda i: f"operator: {_show(ops[i])} is not {allowed}")

    for name in ("a_number", "b_number"):
        values = cols[name]
        bad = np.fromiter(
            (ok and not _NUMBER.fullmatch(x) for x, ok in zip(values, v.ok, strict=True)), dtype=bool, count=n
        )
        v.flag(
            bad,
            "bad_e164",
            lambda i, name=name, values=values: (
                f"{name}: {_show(values[i])} is not E.164 (+ and 4-15 digits) nor a short code"
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


# -- raw JSON values (Kafka) ----------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_value(
    value: Any, rules: ValidationRules
) -> tuple[dict[str, Any] | None, str | None, str | None, str | None]:
    """(record, raw text, reason code, reason) for one raw value; never raises."""
    if value is None:
        return None, None, "bad_json", "empty value (null message)"
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        return None, to_text(value), "bad_type", f"expected bytes, got {type(value).__name__}"
    if len(data) > rules.max_value_bytes:
        head = data[:200].decode("utf-8", "backslashreplace")
        return None, head, "value_too_large", f"value of {len(data)} bytes, more than {rules.max_value_bytes}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = data.decode("utf-8", "backslashreplace")
        return None, raw, "bad_encoding", f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
    safe = _safe_str(text)
    if safe != text:
        return None, safe, "bad_encoding", "not valid Unicode (surrogate code point)"
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return None, text, "bad_json", "nesting too deep"
    except ValueError as exc:
        return None, text, "bad_json", f"invalid JSON: {str(exc).splitlines()[0][:120]}"
    if not isinstance(obj, dict):
        return None, text, "bad_json", f"expected a JSON object, got {_kind_name(obj)}"
    unknown = [k for k in obj if k not in FIELDS_BY_NAME]
    if unknown:
        return None, text, "unknown_field", f"unknown field {_show(unknown[0])} (not in the CDR contract)"
    return obj, text, None, None


def validate_json_values(
    values: Iterable[Any],
    *,
    now: dt.datetime | None = None,
    rules: ValidationRules | None = None,
) -> ValidationResult:
    """Validate raw Kafka values (UTF-8 JSON objects, as ``record_to_json`` writes them).

    Results are indexed by position in ``values``. Integers are accepted for ``duration_s``; a
    value of any other wrong JSON type is dead-lettered, never coerced. ``now`` defaults to
    the wall clock (live traffic); pass it for replays and tests.
    """
    now = now or dt.datetime.now(dt.UTC)
    rules = rules or ValidationRules()
    decoded = [_decode_value(x, rules) for x in values]
    n = len(decoded)
    records = [d[0] or {} for d in decoded]
    frame = pd.DataFrame(
        {name: _object_array([r.get(name) for r in records]) for name in FIELD_NAMES},
        index=pd.RangeIndex(n),
        dtype=object,  # no inference: it would turn ints into floats (or overflow on big ones)
    )
    raw = [d[1] for d in decoded]
    early = np.array([d[2] is not None for d in decoded], dtype=bool)
    checked = validate_frame(
        frame[~early], now=now, rules=rules, raw=[r for r, e in zip(raw, early, strict=True) if not e]
    )
    if not early.any():
        return checked
    pre = pd.DataFrame(
        {
            **{name: [to_text(records[i].get(name)) for i in np.flatnonzero(early)] for name in FIELD_NAMES},
            "raw": [raw[i] for i in np.flatnonzero(early)],
            "reason_code": [decoded[i][2] for i in np.flatnonzero(early)],
            "reason": [decoded[i][3] for i in np.flatnonzero(early)],
        },
        index=pd.RangeIndex(n)[early],
        columns=list(DEAD_LETTER_COLUMNS),
        dtype=object,
    )
    dead = pd.concat([checked.dead, pre]).sort_index() if len(checked.dead) else pre
    return ValidationResult(valid=checked.valid, dead=dead)


def valid_to_arrow(valid: pd.DataFrame) -> pa.Table:
    """The ``valid`` frame as an Arrow table with exactly ``arrow_schema()``."""
    schema = arrow_schema()
    table = pa.Table.from_pandas(valid, schema=schema, preserve_index=False)
    # drop the pandas metadata so the file schema is exactly the contract's
    return table.replace_schema_metadata(schema.metadata)


__all__ = [
    "DEAD_LETTER_COLUMNS",
    "REASON_CODES",
    "ReasonCode",
    "ValidationResult",
    "ValidationRules",
    "to_text",
    "valid_to_arrow",
    "validate_frame",
    "validate_json_values",
]
