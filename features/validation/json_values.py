"""Raw JSON values (Kafka): decoded one by one, then checked as a frame."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.schema import FIELD_NAMES, FIELDS_BY_NAME
from features.validation.frame import validate_frame
from features.validation.rules import DEAD_LETTER_COLUMNS, ValidationResult, ValidationRules
from features.validation.text import kind_name, safe_str, show, to_text


def _object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array even when the items are lists (``np.array`` would nest them)."""
    out = np.empty(len(values), dtype=object)
    for i, x in enumerate(values):
        out[i] = x
    return out


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
    safe = safe_str(text)
    if safe != text:
        return None, safe, "bad_encoding", "not valid Unicode (surrogate code point)"
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return None, text, "bad_json", "nesting too deep"
    except ValueError as exc:
        return None, text, "bad_json", f"invalid JSON: {str(exc).splitlines()[0][:120]}"
    if not isinstance(obj, dict):
        return None, text, "bad_json", f"expected a JSON object, got {kind_name(obj)}"
    unknown = [k for k in obj if k not in FIELDS_BY_NAME]
    if unknown:
        return None, text, "unknown_field", f"unknown field {show(unknown[0])} (not in the CDR contract)"
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
