"""The mapping file: its schema (:class:`OperatorMapping`), template checks and :func:`load_mapping`."""

from __future__ import annotations

import datetime as dt
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from features.errors import MappingError
from features.schema import FIELD_NAMES, FIELDS_BY_NAME, REQUIRED_FIELDS
from pipeline.ingest.values import _as_float, _key_text

Scalar = str | int | float | bool | None
_INT_TYPES = set("dxXob")
_FLOAT_TYPES = set("eEfFgG%")
_OFFSET = re.compile(r"([+-])([0-9]{2}):?([0-9]{2})")


# -- the mapping file -------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


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


#: the format-spec mini-language (``[[fill]align][sign][z][#][0][width][grouping][.precision][type]``)
_SPEC = re.compile(
    r"(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>[0-9]+)?[_,]?(?:\.(?P<precision>[0-9]+))?[bcdeEfFgGnosxX%]?",
    re.DOTALL,
)
#: widest field and longest precision a template may ask for: a canonical value is short, and
#: ``{x:99999999999d}`` would otherwise allocate that many characters per row
MAX_SPEC_WIDTH = 64


def _check_spec(template: str, spec: str) -> None:
    match = _SPEC.fullmatch(spec)
    if match is None:
        return  # format() below says what is wrong with it
    for part in ("width", "precision"):
        value = match.group(part)
        if value is not None and int(value) > MAX_SPEC_WIDTH:
            raise ValueError(
                f"template {template!r}: {part} {value} in {spec!r} is too large (at most {MAX_SPEC_WIDTH})"
            )


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
        _check_spec(template, spec)
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


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``, ``<<: *name``): a mapping file has no
    use for them, and nine nested references to nine references make a 500-byte file expand into
    a billion values (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a mapping file; write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def load_mapping(path: str | Path) -> OperatorMapping:
    """Load a mapping file; any problem is a one-line ``MappingError`` naming file and field."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # a SafeLoader
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
            msg = "unknown key (see the keys documented in pipeline/ingest/__init__.py)"
        extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise MappingError(f"{path}: {loc or '(top level)'}: {msg}{extra}") from None
