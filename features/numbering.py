"""The numbering plan and the number classifier, defined once for Python, pandas and Spark.

``configs/numbering_plan.yaml`` is loaded into frozen pydantic models. From it comes one ordered
prefix table (:meth:`NumberingPlan.prefix_rules`, longest prefix first) that all three
classifiers read: :meth:`NumberingPlan.classify` (one number), :func:`classify_series` (a pandas
Series) and :func:`cli_class_column` / :func:`home_operator_column` (Spark ``Column``
expressions). ``tests/test_numbering.py`` proves the three agree on every kind.

Rules, in order (the first that applies wins):

1. an emergency number or short code from the plan, bare (``"113"``) or in E.164 form
   (``"+84113"``): ``emergency`` / ``short_code``;
2. anything that is not E.164 (``+[1-9][0-9]{3,14}``, the whole string, ASCII digits only):
   ``invalid``;
3. a domestic number (``+`` and the plan's country code) whose longest matching prefix is
   allocated and whose national significant number (NSN) has an allowed length: ``mobile``,
   ``fixed`` (both with the owning operator), ``premium`` or ``toll_free``; a domestic number
   with no allocated prefix or a wrong NSN length: ``unallocated``;
4. a foreign number under an international premium-rate prefix: ``international_premium``;
   any other foreign number: ``international``.

An unallocated or invalid CLI is evidence of spoofing (DOMAIN.md, Ofcom's invalid-CLI rule), so
these kinds are reported, not rejected: record validation (``features.validation``) only checks
the shape of a number, and the detectors read its kind from here.

>>> plan = load_numbering_plan()
>>> plan.classify("+84912345678").kind, plan.classify("+84912345678").operator
('mobile', 'vinaphone')
>>> plan.classify("113").kind
'emergency'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.errors import ConfigError
from features.resources import config_file

if TYPE_CHECKING:
    from pyspark.sql import Column

NumberKind = Literal[
    "mobile",
    "fixed",
    "premium",
    "toll_free",
    "emergency",
    "short_code",
    "international",
    "international_premium",
    "unallocated",
    "invalid",
]
NUMBER_KINDS: tuple[str, ...] = get_args(NumberKind)
#: kinds whose number belongs to this country (an unallocated +CC number still claims to)
DOMESTIC_KINDS: frozenset[str] = frozenset(
    {"mobile", "fixed", "premium", "toll_free", "emergency", "short_code", "unallocated"}
)

#: E.164: '+', a non-zero first digit, 4 to 15 digits in all. ``[0-9]`` rather than ``\d`` so
#: that Python (Unicode digits), pandas and Spark (Java regex) accept exactly the same strings.
#: Python's ``$`` also matches before a final newline, so Python and pandas use ``fullmatch``
#: on :data:`E164_PATTERN` and Spark (Java regex, ``find`` semantics) anchors with ``\z``.
E164_PATTERN = r"\+[1-9][0-9]{3,14}"
_E164 = re.compile(E164_PATTERN)
_E164_JAVA = rf"^{E164_PATTERN}\z"
#: what people write between digits (ITU-T E.123); CR, LF, NUL and the rest are not separators
_SEPARATORS = str.maketrans("", "", " -.()")

DEFAULT_PLAN_PATH = config_file("numbering_plan.yaml")

_PREFIX = re.compile(r"\+[1-9][0-9]*")
_CODE = re.compile(r"[0-9]{2,15}")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_prefixes(values: tuple[str, ...]) -> tuple[str, ...]:
    for p in values:
        if not _PREFIX.fullmatch(p):
            raise ValueError(f"prefix {p!r} must be '+' followed by digits")
    return values


class OperatorPlan(_Frozen):
    name: str
    mobile_prefixes: tuple[str, ...] = ()
    fixed_prefixes: tuple[str, ...] = ()
    #: MCC + MNC, the first digits of every IMSI of this operator's SIMs
    imsi_prefix: str = Field(pattern=r"^[0-9]{5,6}$")  # pydantic (Rust regex): $ is the very end

    _prefixes_ok = field_validator("mobile_prefixes", "fixed_prefixes")(_check_prefixes)


@dataclass(frozen=True)
class PrefixRule:
    """One allocated range: numbers starting with ``prefix`` whose NSN length is allowed."""

    prefix: str
    kind: str
    operator: str | None
    nsn_lengths: frozenset[int]


@dataclass(frozen=True)
class NumberInfo:
    """What the plan says about one number."""

    kind: str
    operator: str | None
    is_domestic: bool
    do_not_originate: bool


class NumberingPlan(_Frozen):
    """The validated ``numbering_plan.yaml``; see the module docstring for the rules."""

    country_code: str = Field(pattern=r"^[1-9][0-9]{0,2}$")
    operator_plans: dict[str, OperatorPlan] = Field(alias="operators")
    mobile_nsn_length: int = Field(ge=4, le=14)
    fixed_nsn_length: int = Field(ge=4, le=14)
    premium_prefixes: tuple[str, ...] = ()
    toll_free_prefixes: tuple[str, ...] = ()
    #: NSN lengths of premium-rate and toll-free numbers (Vietnam: 1900/1800 + 4 or 6 digits)
    service_nsn_lengths: tuple[int, ...] = (8, 10)
    #: code -> description; dialled bare or as "+<cc><code>"
    emergency_numbers: dict[str, str] = Field(default_factory=dict)
    short_codes: dict[str, str] = Field(default_factory=dict)
    international_premium_prefixes: tuple[str, ...] = ()
    common_international_prefixes: tuple[str, ...] = ()
    #: number -> description
    do_not_originate_numbers: dict[str, str] = Field(default_factory=dict, alias="do_not_originate")

    _prefixes_ok = field_validator(
        "premium_prefixes",
        "toll_free_prefixes",
        "international_premium_prefixes",
        "common_international_prefixes",
    )(_check_prefixes)

    @field_validator("operator_plans")
    @classmethod
    def _operator_keys(cls, value: dict[str, OperatorPlan]) -> dict[str, OperatorPlan]:
        for key in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                raise ValueError(f"operator key {key!r} must be lower case [a-z0-9_]")
        return value

    @field_validator("emergency_numbers", "short_codes")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        for code in value:
            if not _CODE.fullmatch(code):
                raise ValueError(f"code {code!r} must be 2 to 15 digits")
        return value

    @field_validator("do_not_originate_numbers")
    @classmethod
    def _dno_e164(cls, value: dict[str, str]) -> dict[str, str]:
        for number in value:
            if not _E164.fullmatch(number):
                raise ValueError(f"do-not-originate number {number!r} is not E.164")
        return value

    # -- helpers used by the simulator, the features and the allowlists -----------------------

    @property
    def domestic_prefix(self) -> str:
        return f"+{self.country_code}"

    @property
    def operators(self) -> tuple[str, ...]:
        """Operator keys, in plan order."""
        return tuple(self.operator_plans)

    def _operator(self, op: str) -> OperatorPlan:
        try:
            return self.operator_plans[op]
        except KeyError:
            raise KeyError(f"unknown operator {op!r}; the plan has {', '.join(self.operators)}") from None

    def mobile_prefixes(self, op: str) -> tuple[str, ...]:
        return self._operator(op).mobile_prefixes

    def fixed_prefixes(self, op: str) -> tuple[str, ...]:
        return self._operator(op).fixed_prefixes

    def imsi_prefix(self, op: str) -> str:
        return self._operator(op).imsi_prefix

    @property
    def do_not_originate(self) -> frozenset[str]:
        return frozenset(self.do_not_originate_numbers)

    def special_numbers(self) -> dict[str, str]:
        """Every accepted spelling of an emergency number or short code -> its kind."""
        return dict(self._special)

    @cached_property
    def _special(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for codes, kind in ((self.short_codes, "short_code"), (self.emergency_numbers, "emergency")):
            for code in codes:
                out[code] = kind
                out[self.domestic_prefix + code] = kind
        return out

    def normalise(self, text: str) -> str | None:
        """``text`` as an E.164 number the plan can classify, or ``None``: visual separators
        (spaces, ``-``, ``.``, ``(``, ``)``) are dropped, nothing else is changed.

        >>> load_numbering_plan().normalise("+84 (989) 051-734")
        '+84989051734'
        """
        if not isinstance(text, str):
            return None
        number = text.strip(" ").translate(_SEPARATORS)
        if not _E164.fullmatch(number) or self.classify(number).kind == "invalid":
            return None
        return number

    def is_allowlisted_always(self, number: str) -> bool:
        """Emergency numbers and short codes are never blocked (FCC safe harbour, DOMAIN.md)."""
        return isinstance(number, str) and number in self._special

    def prefix_rules(self) -> tuple[PrefixRule, ...]:
        """Allocated domestic ranges, longest prefix first (ties keep plan order)."""
        return self._rules

    @cached_property
    def _rules(self) -> tuple[PrefixRule, ...]:
        return _prefix_rules(self)

    # -- the pure classifier ------------------------------------------------------------------

    def classify(self, number: Any) -> NumberInfo:
        """Classify one number (a CLI or a called number); never raises."""
        if not isinstance(number, str):
            return NumberInfo("invalid", None, False, False)
        special = self._special.get(number)
        if special is not None:
            return NumberInfo(special, None, True, number in self.do_not_originate_numbers)
        if not _E164.fullmatch(number):
            return NumberInfo("invalid", None, False, False)
        dno = number in self.do_not_originate_numbers
        if number.startswith(self.domestic_prefix):
            nsn_len = len(number) - len(self.domestic_prefix)
            for rule in self.prefix_rules():
                if number.startswith(rule.prefix):
                    if nsn_len in rule.nsn_lengths:
                        return NumberInfo(rule.kind, rule.operator, True, dno)
                    break
            return NumberInfo("unallocated", None, True, dno)
        for prefix in _longest_first(self.international_premium_prefixes):
            if number.startswith(prefix):
                return NumberInfo("international_premium", None, False, dno)
        return NumberInfo("international", None, False, dno)


def _longest_first(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(prefixes, key=len, reverse=True))


def _prefix_rules(plan: NumberingPlan) -> tuple[PrefixRule, ...]:
    rules: list[PrefixRule] = []
    for op, spec in plan.operator_plans.items():
        rules += [PrefixRule(p, "mobile", op, frozenset({plan.mobile_nsn_length})) for p in spec.mobile_prefixes]
        rules += [PrefixRule(p, "fixed", op, frozenset({plan.fixed_nsn_length})) for p in spec.fixed_prefixes]
    service = frozenset(plan.service_nsn_lengths)
    rules += [PrefixRule(p, "premium", None, service) for p in plan.premium_prefixes]
    rules += [PrefixRule(p, "toll_free", None, service) for p in plan.toll_free_prefixes]
    seen: dict[str, PrefixRule] = {}
    for rule in rules:
        if not rule.prefix.startswith(plan.domestic_prefix):
            raise ConfigError(
                f"numbering plan: prefix {rule.prefix} ({rule.kind}) is not under the country "
                f"code {plan.domestic_prefix}"
            )
        if rule.prefix in seen:
            raise ConfigError(
                f"numbering plan: prefix {rule.prefix} is allocated twice "
                f"({seen[rule.prefix].kind} {seen[rule.prefix].operator}, {rule.kind} {rule.operator})"
            )
        seen[rule.prefix] = rule
    # stable sort: longest prefix first is what makes "+841900" win over a shorter "+8419"
    return tuple(sorted(rules, key=lambda r: len(r.prefix), reverse=True))


def load_numbering_plan(path: str | Path | None = None) -> NumberingPlan:
    """Load and validate a numbering plan; ``None`` gives the repository's plan (cached)."""
    if path is None:
        return _default_plan()
    return _load(Path(path))


@lru_cache(maxsize=1)
def _default_plan() -> NumberingPlan:
    return _load(DEFAULT_PLAN_PATH)


def _load(path: Path) -> NumberingPlan:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read numbering plan ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the numbering plan must be a mapping")
    try:
        plan = NumberingPlan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(f"{path}: {field}: {msg}") from None
    try:
        plan.prefix_rules()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return plan


# -- pandas ---------------------------------------------------------------------------------


def classify_series(numbers: pd.Series, plan: NumberingPlan | None = None) -> pd.DataFrame:
    """Vectorised :meth:`NumberingPlan.classify`: columns ``kind``, ``operator``,
    ``is_domestic``, ``dno`` on the index of ``numbers``. Non-string values are ``invalid``."""
    plan = plan or load_numbering_plan()
    n = len(numbers)
    values = numbers.astype(object)
    is_str = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=n)
    # non-strings become "" so the string methods below see one dtype; "" is invalid anyway
    text = pd.Series(np.where(is_str, values, ""), index=numbers.index, dtype=object).astype(str)

    kind = np.full(n, "invalid", dtype=object)
    operator = np.full(n, None, dtype=object)

    special = text.map(plan.special_numbers()).to_numpy(dtype=object)
    is_special = is_str & pd.notna(special)
    e164 = is_str & ~is_special & text.str.fullmatch(E164_PATTERN).to_numpy(dtype=bool)
    domestic = e164 & text.str.startswith(plan.domestic_prefix).to_numpy(dtype=bool)
    foreign = e164 & ~domestic

    # longest-prefix match: one dictionary look-up per distinct prefix length
    rules = plan.prefix_rules()
    rule_idx = np.full(n, -1, dtype=np.int64)
    for length in sorted({len(r.prefix) for r in rules}, reverse=True):
        table = {r.prefix: i for i, r in enumerate(rules) if len(r.prefix) == length}
        hit = text.str.slice(0, length).map(table).to_numpy(dtype=float)
        take = domestic & (rule_idx < 0) & ~np.isnan(hit)
        rule_idx[take] = hit[take].astype(np.int64)
    # allowed NSN lengths as a bit mask per rule, so the length check is one vector operation
    masks = np.array([sum(1 << k for k in r.nsn_lengths) for r in rules] + [0], dtype=np.int64)
    nsn_len = np.clip(text.str.len().to_numpy(dtype=np.int64) - len(plan.domestic_prefix), 0, 62)
    allocated = domestic & (rule_idx >= 0) & (((masks[rule_idx] >> nsn_len) & 1) == 1)
    rule_kinds = np.array([r.kind for r in rules] + ["unallocated"], dtype=object)
    rule_ops = np.array([r.operator for r in rules] + [None], dtype=object)

    kind[domestic] = "unallocated"
    kind[allocated] = rule_kinds[rule_idx[allocated]]
    operator[allocated] = rule_ops[rule_idx[allocated]]

    kind[foreign] = "international"
    for prefix in plan.international_premium_prefixes:
        kind[foreign & text.str.startswith(prefix).to_numpy(dtype=bool)] = "international_premium"

    kind[is_special] = special[is_special]
    dno = is_str & text.isin(plan.do_not_originate_numbers.keys()).to_numpy(dtype=bool)
    is_domestic = np.isin(kind, list(DOMESTIC_KINDS)) & is_str
    return pd.DataFrame(
        {"kind": kind, "operator": operator, "is_domestic": is_domestic, "dno": dno},
        index=numbers.index,
    )


# -- Spark ----------------------------------------------------------------------------------


# Each expression is one SQL ``CASE`` parsed once by Spark: built from Python ``Column`` calls it
# took a Py4J round trip per branch (hundreds), paid again by every micro-batch that uses it.


def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_in(column: str, values) -> str:
    values = sorted(values)
    if not values:
        return "false"
    return f"{column} IN ({', '.join(_sql_text(str(v)) for v in values)})"


def _sql_name(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _sql_case(branches: list[tuple[str, str]], otherwise: str) -> Column:
    from pyspark.sql import functions as F

    whens = " ".join(f"WHEN {cond} THEN {value}" for cond, value in branches)
    return F.expr(f"CASE {whens} ELSE {otherwise} END")


def cli_class_column(column: str, plan: NumberingPlan | None = None) -> Column:
    """Spark expression giving the number kind (a ``NUMBER_KINDS`` string) of the column named
    ``column``."""
    plan = plan or load_numbering_plan()
    c = _sql_name(column)
    special = plan.special_numbers()
    branches = [(f"{c} IS NULL", "'invalid'")]
    for kind in ("emergency", "short_code"):
        spellings = [s for s, k in special.items() if k == kind]
        if spellings:
            branches.append((_sql_in(c, spellings), _sql_text(kind)))
    branches.append((f"NOT ({c} RLIKE r'{_E164_JAVA}')", "'invalid'"))
    nsn_len = f"(length({c}) - {len(plan.domestic_prefix)})"
    for rule in plan.prefix_rules():
        starts = f"startswith({c}, {_sql_text(rule.prefix)})"
        branches.append((f"{starts} AND {_sql_in(nsn_len, rule.nsn_lengths)}", _sql_text(rule.kind)))
        branches.append((starts, "'unallocated'"))
    branches.append((f"startswith({c}, {_sql_text(plan.domestic_prefix)})", "'unallocated'"))
    for prefix in _longest_first(plan.international_premium_prefixes):
        branches.append((f"startswith({c}, {_sql_text(prefix)})", "'international_premium'"))
    return _sql_case(branches, "'international'")


def home_operator_column(column: str, plan: NumberingPlan | None = None) -> Column:
    """Spark expression giving the operator owning a mobile or fixed number in the column named
    ``column``, else null."""
    plan = plan or load_numbering_plan()
    c = _sql_name(column)
    none = "CAST(NULL AS STRING)"
    nsn_len = f"(length({c}) - {len(plan.domestic_prefix)})"
    branches = [
        (f"{c} IS NULL OR NOT ({c} RLIKE r'{_E164_JAVA}')", none),
        (_sql_in(c, plan.special_numbers()), none),
    ]
    for rule in plan.prefix_rules():
        starts = f"startswith({c}, {_sql_text(rule.prefix)})"
        value = _sql_text(rule.operator) if rule.operator else none
        branches.append((f"{starts} AND {_sql_in(nsn_len, rule.nsn_lengths)}", value))
        branches.append((starts, none))
    return _sql_case(branches, none)


def dno_column(column: str, plan: NumberingPlan | None = None) -> Column:
    """Spark boolean expression: the column named ``column`` is on the Do-Not-Originate list
    (null -> false)."""
    from pyspark.sql import functions as F

    plan = plan or load_numbering_plan()
    return F.expr(f"coalesce({_sql_in(_sql_name(column), plan.do_not_originate)}, false)")


__all__ = [
    "DEFAULT_PLAN_PATH",
    "DOMESTIC_KINDS",
    "E164_PATTERN",
    "NUMBER_KINDS",
    "NumberInfo",
    "NumberKind",
    "NumberingPlan",
    "OperatorPlan",
    "PrefixRule",
    "classify_series",
    "cli_class_column",
    "dno_column",
    "home_operator_column",
    "load_numbering_plan",
]
