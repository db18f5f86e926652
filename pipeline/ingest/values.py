"""Reading one value as text, float or integer, the same way for conditions and conversions."""

from __future__ import annotations

import math
import re
from typing import Any

_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _key_text(value: Any) -> str:
    """YAML keys and values compared with source text: 11 -> "11", true -> "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        return float(value)
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER_TEXT.fullmatch(text) and len(text) <= 40:
            return int(text)
        number = _as_float(text)
        if number is not None and math.isfinite(number) and number.is_integer() and abs(number) < 1e18:
            return int(number)
    return None
