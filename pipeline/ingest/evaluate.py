"""Evaluating a mapping on a chunk of rows: :func:`map_rows`."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.schema import FIELD_NAMES, FIELDS_BY_NAME
from features.validation import (
    to_text,
)
from pipeline.ingest.mapping import (
    _FLOAT_TYPES,
    _INT_TYPES,
    FieldSpec,
    OperatorMapping,
    SourceSpec,
    ValueSpec,
    _template_fields,
    _zone,
)
from pipeline.ingest.values import _as_float, _as_int, _key_text

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


# -- evaluating a mapping on a chunk of rows --------------------------------------------------


@dataclass
class _Column:
    """Per-row values of one evaluated spec, with the first error and why a value is null."""

    values: list[Any]
    errors: list[tuple[str, str] | None]
    notes: list[str | None]


class _Evaluator:
    def __init__(self, mapping: OperatorMapping, *, rows: list[dict[str, Any]], source: SourceSpec) -> None:
        self.mapping = mapping
        self.rows = rows
        self.source = source
        self.derived: dict[str, _Column] = {}
        self.n = len(rows)

    def _get(self, name: str, i: int) -> Any:
        if name in self.derived:
            return self.derived[name].values[i]
        return self.rows[i].get(name)

    def _why_null(self, name: str, i: int) -> str:
        if name in self.derived:
            return self.derived[name].notes[i] or f"derived {name} is null"
        return f"column {name} is empty"

    def evaluate(self, name: str, spec: FieldSpec, *, target: str | None) -> _Column:
        out = _Column([None] * self.n, [None] * self.n, [None] * self.n)
        for i in range(self.n):
            chosen: ValueSpec | None = spec
            if spec.cases is not None:
                chosen = next(
                    (c for c in spec.cases if all(cond.holds(self._get(col, i)) for col, cond in c.when.items())),
                    spec.otherwise,
                )
                if chosen is None:
                    tested = sorted(set().union(*(c.when for c in spec.cases)))
                    shown = ", ".join(f"{col}={to_text(self._get(col, i))!r}" for col in tested)
                    out.notes[i] = f"no case of {name} matched ({shown})"
                    continue
            try:
                out.values[i], out.notes[i] = self._value(name, chosen, i, target=target)
            except _RowError as err:
                out.errors[i] = (err.code, err.message)
        return out

    def _value(self, name: str, spec: ValueSpec, i: int, *, target: str | None) -> tuple[Any, str | None]:
        if "constant" in spec.model_fields_set:
            value: Any = spec.constant
            note = None if value is not None else f"{name} is null by the mapping"
        elif spec.column is not None:
            value = self._get(spec.column, i)
            note = None if value is not None else self._why_null(spec.column, i)
        else:
            value, note = self._template(name, spec.template or "", i)
        if value is None:
            return None, note
        if spec.map is not None:
            key = _key_text(value) if not isinstance(value, float) else to_text(value)
            if key not in spec.map:
                shown = ", ".join(list(spec.map)[:8])
                raise _RowError("bad_enum", f"{name}: {to_text(value)!r} is not in the mapping's table ({shown})")
            value = spec.map[key]
            if value is None:
                return None, f"{name} maps {key!r} to null"
        if spec.scale is not None:
            number = _as_float(value)
            if number is None or not math.isfinite(number):
                raise _RowError(
                    "bad_type", f"{name}: {to_text(value)!r} is not a finite number (to scale by {spec.scale:g})"
                )
            value = number * spec.scale
        if target is None:
            return value, None
        return self._convert(target, value, spec), None

    def _template(self, name: str, template: str, i: int) -> tuple[str | None, str | None]:
        args: dict[str, Any] = {}
        for col, spec in _template_fields(template):
            raw = self._get(col, i)
            if raw is None:
                return None, self._why_null(col, i)
            kind = spec[-1:] if spec else ""
            if kind in _INT_TYPES:
                value = _as_int(raw)
                if value is None:
                    raise _RowError("bad_type", f"{name}: {col} {to_text(raw)!r} is not an integer")
            elif kind in _FLOAT_TYPES:
                value = _as_float(raw)
                if value is None:
                    raise _RowError("bad_type", f"{name}: {col} {to_text(raw)!r} is not a number")
            else:
                value = to_text(raw)
            args[col] = value
        try:
            return template.format_map(args), None
        except (ValueError, OverflowError) as exc:
            raise _RowError("bad_type", f"{name}: template {template!r} failed ({exc})") from None

    def _convert(self, target: str, value: Any, spec: ValueSpec) -> Any:
        kind = FIELDS_BY_NAME[target].kind
        if kind in ("string", "enum"):
            return value if isinstance(value, str) else to_text(value)
        if kind == "double":
            number = _as_float(value)
            # NaN would read as "missing" downstream; a non-number is a type error, say so
            if number is None or not math.isfinite(number):
                raise _RowError("bad_type", f"{target}: {to_text(value)!r} is not a finite number")
            return number
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            text = to_text(value).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise _RowError("bad_type", f"{target}: {to_text(value)!r} is not a boolean")
        return _parse_time(
            target,
            value,
            fmt=spec.timestamp_format or self.source.timestamp_format,
            zone=spec.timezone or self.source.timezone,
        )


class _RowError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parse_time(target: str, value: Any, *, fmt: str, zone: str) -> dt.datetime:
    shown = to_text(value)
    try:
        if fmt in ("epoch_s", "epoch_ms"):
            number = _as_float(value)
            if number is None:
                raise _RowError("bad_type", f"{target}: {shown!r} is not a number of seconds")
            return dt.datetime.fromtimestamp(number / (1000 if fmt == "epoch_ms" else 1), dt.UTC)
        if not isinstance(value, str):
            raise _RowError("bad_type", f"{target}: {shown!r} is not a timestamp text")
        text = value.strip()
        parsed = dt.datetime.fromisoformat(text) if fmt == "iso8601" else dt.datetime.strptime(text, fmt)
    except (ValueError, OverflowError, OSError):
        raise _RowError("bad_type", f"{target}: {shown!r} does not match the timestamp format {fmt!r}") from None
    if parsed.tzinfo is None:
        parsed = _localize(target, parsed, zone)
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise _RowError("bad_type", f"{target}: {shown!r} is out of range in UTC") from None


def _localize(target: str, naive: dt.datetime, zone_name: str) -> dt.datetime:
    zone = _zone(zone_name)
    early, late = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    try:
        back = early.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise _RowError("bad_type", f"{target}: {naive} is out of range in UTC") from None
    # in a gap the wall time does not come back; in an overlap both folds exist (PEP 495)
    if back != naive:
        raise _RowError("bad_type", f"{target}: local time {naive} does not exist in {zone_name} (clock change)")
    if early.utcoffset() != late.utcoffset():
        raise _RowError("bad_type", f"{target}: local time {naive} is ambiguous in {zone_name} (clock change)")
    return early


def map_rows(mapping: OperatorMapping, rows: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[tuple[str, str] | None]]:
    """Canonical-named frame (values not yet validated) and each row's mapping error, if any."""
    ev = _Evaluator(mapping, rows=rows, source=mapping.source)
    errors: list[tuple[str, str] | None] = [None] * len(rows)

    def merge(col: _Column) -> None:
        for i, err in enumerate(col.errors):
            if err is not None and errors[i] is None:
                errors[i] = err

    for name, spec in mapping.derive.items():
        ev.derived[name] = ev.evaluate(f"derive.{name}", spec, target=None)
        merge(ev.derived[name])
    data: dict[str, list[Any]] = {}
    for name in FIELD_NAMES:
        spec = mapping.fields.get(name)
        if spec is None:
            data[name] = [None] * len(rows)
            continue
        col = ev.evaluate(name, spec, target=name)
        merge(col)
        if not FIELDS_BY_NAME[name].nullable:
            for i, (value, note) in enumerate(zip(col.values, col.notes, strict=True)):
                if value is None and errors[i] is None:
                    errors[i] = ("missing_field", f"{name}: no value ({note})" if note else f"{name}: no value")
        data[name] = col.values
    frame = pd.DataFrame({k: _objects(v) for k, v in data.items()}, dtype=object)
    return frame, errors


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, x in enumerate(values):
        out[i] = x
    return out
