"""Raw values as text: for the dead letter (nothing lost, always writable) and for reasons."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pandas as pd

_SHOW_CHARS = 40


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def safe_str(text: str) -> str:
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
        return safe_str(value)
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
        return safe_str(json.dumps(value, ensure_ascii=False, default=repr))
    except (ValueError, TypeError, RecursionError):
        return safe_str(repr(value))


def show(value: Any) -> str:
    text = to_text(value)
    if text is None:
        return "null"
    shown = text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + f"... ({len(text)} chars)"
    return repr(shown)


def kind_name(value: Any) -> str:
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
