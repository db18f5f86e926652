"""Batch ingest: an operator's CSV or JSON-lines export -> canonical CDR Parquet + dead letter.

An operator export has its own columns, codes, units and local time. A *mapping file*
(``configs/mappings/*.yaml``, validated by :class:`OperatorMapping`) says declaratively how each
canonical field (``features.schema``) is obtained from a row:

``column: Name``            the value of a source column;
``constant: value``         a fixed value (``null`` allowed);
``template: "+2137{A_Num:08d}"``  a Python format string over source (or derived) columns. The
                            format type says how a placeholder is read: ``d``/``x``/``o``/``b``
                            an integer (``"8800"`` and ``"8800.0"`` both give 8800, ``"88.5"`` is
                            ``bad_type``), ``e``/``f``/``g``/``%`` a float, anything else text. A
                            pseudonymised integer id thus becomes a synthetic E.164 number;
``map: {"11": voice}``      applied after the above: a code table (text of the value -> value);
                            a value not in the table dead-letters the row as ``bad_enum``;
``scale: 0.001``            applied after ``map``: multiply a number (e.g. ms -> s);
``cases: [{when: {...}, <one of the above>}, ...]`` and ``otherwise: {...}``: the first case
                            whose conditions all hold gives the value; without ``otherwise`` a
                            row no case matches gets null. A condition on a column is a value
                            or list of values (compared as text), or ``{gt|ge|lt|le: number}``,
                            or ``{empty: true|false}``.

``derive:`` defines named intermediate values with the same syntax, evaluated in order before
``fields:``; conditions and templates may use them like source columns (e.g. a call direction
decoded once from a record-type code). Timestamps are read with ``timestamp_format`` (a
``strptime`` format, ``iso8601``, ``epoch_s`` or ``epoch_ms``) in ``timezone`` (IANA name or
``+HH:MM``) unless they carry an offset, then converted to UTC. A local time that does not exist
or is ambiguous (a DST change) is dead-lettered, not guessed.

Each mapped row then goes through ``features.validation.validate_frame``, the one definition of
record validity shared with the streaming job. Output under ``--out``:

- ``cdrs/part-00000.parquet`` with exactly ``features.schema.arrow_schema()``;
- ``dead_letter/dead_letter.jsonl``: one JSON object per rejected row with ``line`` (where the
  row starts in the input), ``record`` (the full original row, undecodable bytes as ``\\xNN``),
  ``reason_code``, ``reason`` and, when mapping succeeded, ``mapped`` (the canonical values);
- ``ingest_summary.json``: rows in, valid, dead-lettered by reason. ``rows_in == valid +
  dead_lettered`` always; a blank line is not a row.

Record ids must be unique: a later row repeating a valid row's ``record_id`` is dead-lettered as
``duplicate_record`` (consumers deduplicate by id and would silently drop one of them).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
import shutil
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from features.errors import MappingError, SchemaError
from features.schema import FIELD_NAMES, FIELDS_BY_NAME, REQUIRED_FIELDS, arrow_schema
from features.validation import (
    ValidationRules,
    to_text,
    valid_to_arrow,
    validate_frame,
)

#: archives: ten years back is still plausible for a historical export
DEFAULT_MAX_AGE_DAYS = 3650.0
#: a day of tolerance for exports whose clocks or time zone settings are off
DEFAULT_MAX_FUTURE_S = 86400.0
CHUNK_ROWS = 50_000

Scalar = str | int | float | bool | None
_INT_TYPES = set("dxXob")
_FLOAT_TYPES = set("eEfFgG%")
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SURROGATE = re.compile("[\udc80-\udcff]")
_OFFSET = re.compile(r"([+-])([0-9]{2}):?([0-9]{2})")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


# -- the mapping file -------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _key_text(value: Any) -> str:
    """YAML keys and values compared with source text: 11 -> "11", true -> "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Condition(_Model):
    """A test on one column's value; all set tests must hold."""

    in_: tuple[str, ...] | None = Field(None, alias="in")
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    empty: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, (list, tuple)):
            return {"in": [_key_text(v) for v in data]}
        if not isinstance(data, dict):
            return {"in": [_key_text(data)]}
        if "in" in data and isinstance(data["in"], (list, tuple)):
            return {**data, "in": [_key_text(v) for v in data["in"]]}
        return data

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("a condition needs at least one of in, gt, ge, lt, le, empty")
        return self

    def holds(self, value: Any) -> bool:
        if self.empty is not None and (value is None) != self.empty:
            return False
        if self.in_ is not None and (value is None or _key_text(value) not in self.in_):
            return False
        if any(b is not None for b in (self.gt, self.ge, self.lt, self.le)):
            number = _as_float(value)
            if number is None:
                return False
            for bound, test in (
                (self.gt, number.__gt__),
                (self.ge, number.__ge__),
                (self.lt, number.__lt__),
                (self.le, number.__le__),
            ):
                if bound is not None and not test(bound):
                    return False
        return True


class ValueSpec(_Model):
    """Exactly one of ``column``, ``constant``, ``template``; then ``map`` and ``scale``."""

    column: str | None = None
    constant: Scalar = None
    template: str | None = None
    map: dict[str, Scalar] | None = None
    scale: float | None = None
    timestamp_format: str | None = None
    timezone: str | None = None

    @field_validator("map", mode="before")
    @classmethod
    def _map_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_key_text(k): v for k, v in value.items()}
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            _template_fields(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is not None:
            _zone(value)
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _ts_format(cls, value: str | None) -> str | None:
        if value is not None and value not in ("iso8601", "epoch_s", "epoch_ms") and "%" not in value:
            raise ValueError("must be a strptime format (with %), iso8601, epoch_s or epoch_ms")
        return value

    def _sources(self) -> set[str]:
        return self.model_fields_set & {"column", "constant", "template"}

    @model_validator(mode="after")
    def _one_source(self) -> ValueSpec:
        if not isinstance(self, FieldSpec) and len(self._sources()) != 1:
            raise ValueError("give exactly one of column, constant, template")
        return self

    def columns(self) -> set[str]:
        used = {self.column} if self.column is not None else set()
        if self.template is not None:
            used |= {name for name, _ in _template_fields(self.template)}
        return used


class Case(ValueSpec):
    when: dict[str, Condition] = Field(min_length=1)

    def columns(self) -> set[str]:
        return super().columns() | set(self.when)


class FieldSpec(ValueSpec):
    """A :class:`ValueSpec`, or ``cases`` with an optional ``otherwise``."""

    cases: tuple[Case, ...] | None = None
    otherwise: ValueSpec | None = None

    @model_validator(mode="after")
    def _shape(self) -> FieldSpec:
        sources = self._sources()
        if self.cases is None:
            if self.otherwise is not None:
                raise ValueError("otherwise needs cases")
            if len(sources) != 1:
                raise ValueError("give exactly one of column, constant, template (or cases)")
        elif sources or self.model_fields_set & {"map", "scale", "timestamp_format", "timezone"}:
            raise ValueError("with cases, put the value in each case and in otherwise")
        return self

    def columns(self) -> set[str]:
        if self.cases is None:
            return super().columns()
        used = set().union(*(c.columns() for c in self.cases))
        return used | (self.otherwise.columns() if self.otherwise else set())


class SourceSpec(_Model):
    format: Literal["csv", "jsonl"]
    delimiter: str = Field(",", min_length=1, max_length=1)
    quotechar: str = Field('"', min_length=1, max_length=1)
    encoding: str = "utf-8"
    #: input column -> name used in this mapping (e.g. an empty header)
    rename: dict[str, str] = Field(default_factory=dict)
    #: texts that mean "no value"
    null_values: tuple[str, ...] = ("",)
    timestamp_format: str = "iso8601"
    #: zone of times written without an offset
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        _zone(value)
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


class OperatorMapping(_Model):
    """One operator export layout -> the canonical CDR."""

    description: str = ""
    source: SourceSpec
    derive: dict[str, FieldSpec] = Field(default_factory=dict)
    fields: dict[str, FieldSpec]

    @field_validator("fields")
    @classmethod
    def _canonical(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        unknown = [k for k in value if k not in FIELDS_BY_NAME]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a canonical field ({', '.join(FIELD_NAMES)})")
        missing = [k for k in REQUIRED_FIELDS if k not in value]
        if missing:
            raise ValueError(f"required canonical field {missing[0]!r} has no mapping")
        return value

    @field_validator("derive")
    @classmethod
    def _derive_order(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        names = list(value)
        for i, (name, spec) in enumerate(value.items()):
            ahead = spec.columns() & set(names[i:])
            if ahead:
                raise ValueError(f"derive.{name} uses {min(ahead)!r}, which is derived later (or itself)")
        return value

    def source_columns(self) -> dict[str, str]:
        """Source column -> the first mapping entry (``fields.x`` / ``derive.y``) that uses it."""
        used: dict[str, str] = {}
        for section, specs in (("derive", self.derive), ("fields", self.fields)):
            for name, spec in specs.items():
                for col in sorted(spec.columns()):
                    if col not in self.derive:
                        used.setdefault(col, f"{section}.{name}")
        return used


@lru_cache(maxsize=256)
def _template_fields(template: str) -> tuple[tuple[str, str], ...]:
    """(column, format spec) for each placeholder; raises ValueError on a bad template."""
    out: list[tuple[str, str]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template {template!r}: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name or any(ch in name for ch in ".[]{}"):
            raise ValueError(f"template {template!r}: placeholder {{{name}}} must be a column name (rename odd ones)")
        if conversion or (spec and "{" in spec):
            raise ValueError(f"template {template!r}: no conversions or nested fields")
        try:
            format(_placeholder_sample(spec), spec)
        except ValueError as exc:
            raise ValueError(f"template {template!r}: bad format {spec!r} ({exc})") from None
        out.append((name, spec))
    return tuple(out)


def _placeholder_sample(spec: str) -> Any:
    kind = spec[-1:] if spec else ""
    return 0 if kind in _INT_TYPES else 0.0 if kind in _FLOAT_TYPES else ""


def _zone(name: str) -> dt.tzinfo:
    match = _OFFSET.fullmatch(name)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return dt.timezone(sign * dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Africa/Algiers, or +01:00)") from None


def load_mapping(path: str | Path) -> OperatorMapping:
    """Load a mapping file; any problem is a one-line ``MappingError`` naming file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"{path}: cannot read mapping file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise MappingError(f"{path}:{where}: {getattr(exc, 'problem', None) or 'invalid YAML'}") from None
    if not isinstance(raw, dict):
        raise MappingError(f"{path}: a mapping file is a YAML mapping with source: and fields:")
    try:
        return OperatorMapping.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown key (see the keys documented in pipeline/ingest.py)"
        extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise MappingError(f"{path}: {loc or '(top level)'}: {msg}{extra}") from None


# -- evaluating a mapping on a chunk of rows --------------------------------------------------


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


# -- reading the input ------------------------------------------------------------------------


@dataclass
class _Row:
    line: int
    #: the row as the mapping sees it (renamed columns, null texts as None); None if unreadable
    record: dict[str, Any] | None
    #: the row exactly as read, for the dead letter: {header: text} for a CSV row (a list when
    #: the column count is wrong), the object for a JSON line (its text if it does not parse)
    original: Any
    error: tuple[str, str] | None = None


def _bytes_escaped(text: str) -> str:
    """Text read with ``surrogateescape``: undecodable bytes shown as ``\\xNN``."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _csv_reader(handle: Any, source: SourceSpec) -> Any:
    return csv.reader(handle, delimiter=source.delimiter, quotechar=source.quotechar)


def _read_csv_header(path: Path, source: SourceSpec) -> list[str]:
    """The header as written (without a byte-order mark); ``source.rename`` is applied later."""
    with path.open("r", encoding=source.encoding, errors="surrogateescape", newline="") as handle:
        try:
            header_row = next((r for r in _csv_reader(handle, source) if r), None)
        except csv.Error as exc:
            raise SchemaError(f"{path}: cannot read the CSV header ({exc})") from None
    if header_row is None:
        raise SchemaError(f"{path}: the input is empty (no header row)")
    if any(_SURROGATE.search(h) for h in header_row):
        raise SchemaError(f"{path}: the header is not valid {source.encoding}")
    header_row[0] = header_row[0].removeprefix("\ufeff")  # a byte-order mark from Excel
    return header_row


def _read_csv(path: Path, source: SourceSpec, header: list[str], *, max_row_chars: int) -> Iterator[_Row]:
    old_limit = csv.field_size_limit()
    handle = path.open("r", encoding=source.encoding, errors="surrogateescape", newline="")
    try:
        # a huge field is reported as value_too_large below instead of stopping the reader
        csv.field_size_limit(2**31 - 1)
        reader = _csv_reader(handle, source)
        names = [source.rename.get(h, h) for h in header]
        header_seen = False
        last_line = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield _Row(
                    last_line + 1, None, None, ("malformed_row", f"line {last_line + 1}: unreadable CSV ({exc})")
                )
                if reader.line_num == last_line:
                    return
                last_line = reader.line_num
                continue
            start, last_line = last_line + 1, reader.line_num
            if not values:
                continue
            if not header_seen:
                header_seen = True
                continue
            if any(_SURROGATE.search(v) for v in values):
                shown = [_bytes_escaped(v) for v in values]
                original: Any = dict(zip(header, shown, strict=True)) if len(values) == len(header) else shown
                yield _Row(start, None, original, ("bad_encoding", f"line {start}: not valid {source.encoding}"))
                continue
            if len(values) != len(header):
                yield _Row(
                    start,
                    None,
                    values,
                    ("malformed_row", f"line {start}: {len(values)} columns, the header has {len(header)}"),
                )
                continue
            original = dict(zip(header, values, strict=True))
            size = sum(len(v) for v in values)
            if size > max_row_chars:
                yield _Row(
                    start,
                    None,
                    original,
                    ("value_too_large", f"line {start}: {size} characters, more than {max_row_chars}"),
                )
                continue
            record = {
                renamed: (None if v in source.null_values else v) for renamed, v in zip(names, values, strict=True)
            }
            yield _Row(start, record, original)
    finally:
        handle.close()
        csv.field_size_limit(old_limit)


def _read_jsonl(path: Path, source: SourceSpec, *, max_row_chars: int) -> Iterator[_Row]:
    with path.open("rb") as handle:
        for number, data in enumerate(handle, start=1):
            if not data.strip():
                continue
            text = data.decode(source.encoding, "surrogateescape").rstrip("\r\n")
            if _SURROGATE.search(text):
                yield _Row(
                    number, None, _bytes_escaped(text), ("bad_encoding", f"line {number}: not valid {source.encoding}")
                )
                continue
            if len(text) > max_row_chars:
                yield _Row(
                    number,
                    None,
                    text,
                    ("value_too_large", f"line {number}: {len(text)} characters, more than {max_row_chars}"),
                )
                continue
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield _Row(
                    number, None, text, ("bad_json", f"line {number}: invalid JSON ({str(exc).splitlines()[0][:100]})")
                )
                continue
            if not isinstance(obj, dict):
                yield _Row(number, None, text, ("bad_json", f"line {number}: expected a JSON object"))
                continue
            # a JSON escape can still decode to a lone surrogate, which no output can hold
            bad = next((k for k, v in obj.items() if isinstance(v, str) and not v.isascii() and to_text(v) != v), None)
            if bad is not None:
                yield _Row(number, None, text, ("bad_encoding", f"line {number}: {bad} holds a lone surrogate"))
                continue
            record = {
                source.rename.get(k, k): (None if isinstance(v, str) and v in source.null_values else v)
                for k, v in obj.items()
            }
            yield _Row(number, record, obj)


def _chunks(rows: Iterator[_Row], size: int) -> Iterator[list[_Row]]:
    chunk: list[_Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- the job ----------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    input: str
    mapping: str
    out: str
    rows_in: int = 0
    valid: int = 0
    dead_lettered: int = 0
    dead_by_reason: dict[str, int] = field(default_factory=dict)
    max_age_days: float = DEFAULT_MAX_AGE_DAYS
    now: str = ""
    elapsed_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=False) + "\n"


def _prepare_out(out: Path, *, overwrite: bool) -> tuple[Path, Path, Path]:
    cdrs, dead, summary = out / "cdrs", out / "dead_letter", out / "ingest_summary.json"
    existing = [p for p in (cdrs, dead, summary) if p.exists()]
    if existing and not overwrite:
        raise SchemaError(f"{existing[0]} already exists; choose another --out or pass --overwrite")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    cdrs.mkdir(parents=True)
    dead.mkdir(parents=True)
    return cdrs, dead, summary


def _check_columns(
    mapping: OperatorMapping, mapping_path: Path, input_path: Path, available: set[str], *, every_row: bool
) -> None:
    for col, where in mapping.source_columns().items():
        if col not in available:
            shown = ", ".join(repr(c) for c in sorted(available)[:20])
            scope = "the input header" if every_row else "any record of the first chunk"
            raise MappingError(
                f"{mapping_path}: {where}: column {col!r} is not in {scope} of {input_path.name} (has {shown})"
            )


def run_ingest(
    mapping_path: str | Path,
    input_path: str | Path,
    out: str | Path,
    *,
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
    now: dt.datetime | None = None,
    overwrite: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Map, validate and write one export; see the module docstring for the outputs."""
    mapping_path, input_path, out = Path(mapping_path), Path(input_path), Path(out)
    mapping = load_mapping(mapping_path)
    if not input_path.is_file():
        raise SchemaError(f"{input_path}: input file not found")
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    rules = ValidationRules(max_past_days=max_age_days, max_future_s=max_future_s)
    max_row_chars = rules.max_value_bytes

    if mapping.source.format == "csv":
        header = _read_csv_header(input_path, mapping.source)
        rows = _read_csv(input_path, mapping.source, header, max_row_chars=max_row_chars)
        names = [mapping.source.rename.get(h, h) for h in header]
        _check_columns(mapping, mapping_path, input_path, set(names) | set(mapping.derive), every_row=True)
        duplicated = sorted({h for h in names if names.count(h) > 1} & set(mapping.source_columns()))
        if duplicated:
            raise MappingError(
                f"{mapping_path}: column {duplicated[0]!r} appears twice in the header of {input_path.name}; rename one"
            )
    else:
        rows = _read_jsonl(input_path, mapping.source, max_row_chars=max_row_chars)

    cdrs_dir, dead_dir, summary_path = _prepare_out(out, overwrite=overwrite)
    summary = IngestSummary(
        input=str(input_path),
        mapping=str(mapping_path),
        out=str(out),
        max_age_days=max_age_days,
        now=now.isoformat(),
    )
    reasons: Counter[str] = Counter()
    seen_ids: dict[str, int] = {}
    writer = pq.ParquetWriter(cdrs_dir / "part-00000.parquet", arrow_schema())
    checked_jsonl = mapping.source.format == "csv"
    try:
        with (dead_dir / "dead_letter.jsonl").open("w", encoding="utf-8") as dead_out:

            def dead_letter(row: _Row, code: str, reason: str, mapped: Mapping[str, Any] | None = None) -> None:
                entry: dict[str, Any] = {
                    "line": row.line,
                    "record": row.original,
                    "reason_code": code,
                    "reason": reason,
                }
                if mapped is not None:
                    entry["mapped"] = mapped
                dead_out.write(json.dumps(entry, ensure_ascii=False, default=to_text) + "\n")
                reasons[code] += 1

            for chunk in _chunks(rows, chunk_rows):
                summary.rows_in += len(chunk)
                good = [r for r in chunk if r.error is None]
                if not checked_jsonl and good:
                    keys = set().union(*((r.record or {}).keys() for r in good)) | set(mapping.derive)
                    _check_columns(mapping, mapping_path, input_path, keys, every_row=False)
                    checked_jsonl = True
                for r in chunk:
                    if r.error is not None:
                        dead_letter(r, *r.error)
                frame, errors = map_rows(mapping, [r.record or {} for r in good])
                mapped_ok = [e is None for e in errors]
                for r, err in zip(good, errors, strict=True):
                    if err is not None:
                        dead_letter(r, *err)
                result = validate_frame(frame[np.array(mapped_ok, dtype=bool)], now=now, rules=rules)
                for i, dead in result.dead.iterrows():
                    mapped = {name: dead[name] for name in FIELD_NAMES}
                    dead_letter(good[int(i)], dead["reason_code"], dead["reason"], mapped)
                valid = result.valid
                keep = np.ones(len(valid), dtype=bool)
                for pos, (i, record_id) in enumerate(zip(valid.index, valid["record_id"], strict=True)):
                    first = seen_ids.setdefault(record_id, good[int(i)].line)
                    if first != good[int(i)].line:
                        keep[pos] = False
                        mapped = {name: to_text(valid.iloc[pos][name]) for name in FIELD_NAMES}
                        dead_letter(
                            good[int(i)],
                            "duplicate_record",
                            f"record_id {record_id!r} already used by line {first}",
                            mapped,
                        )
                valid = valid[keep]
                writer.write_table(valid_to_arrow(valid))
                summary.valid += len(valid)
                if progress is not None:
                    progress(summary.rows_in)
    finally:
        writer.close()

    summary.dead_lettered = sum(reasons.values())
    summary.dead_by_reason = dict(reasons.most_common())
    summary.elapsed_s = round(time.monotonic() - started, 3)
    if summary.rows_in != summary.valid + summary.dead_lettered:  # pragma: no cover - invariant
        raise AssertionError(f"rows in {summary.rows_in} != valid {summary.valid} + dead {summary.dead_lettered}")
    summary_path.write_text(summary.to_json(), encoding="utf-8")
    return summary
