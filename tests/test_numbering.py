"""The numbering plan classifier: pure Python, pandas and Spark agree on every kind."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from features.errors import ConfigError
from features.numbering import (
    DEFAULT_PLAN_PATH,
    NUMBER_KINDS,
    NumberInfo,
    classify_series,
    cli_class_column,
    dno_column,
    home_operator_column,
    load_numbering_plan,
)

# (number, kind, operator, do_not_originate) against configs/numbering_plan.yaml
CASES: list[tuple[object, str, str | None, bool]] = [
    ("+84912345678", "mobile", "vinaphone", False),
    ("+84321234567", "mobile", "viettel", False),
    ("+84701234567", "mobile", "mobifone", False),
    ("+84921234567", "mobile", "vietnamobile", False),
    ("+842461234567", "fixed", "viettel", False),
    ("+842439000001", "fixed", "vinaphone", True),  # a DNO bank hotline: allocated and DNO
    ("+841900123456", "premium", None, False),  # 10-digit NSN
    ("+8419001234", "premium", None, False),  # 8-digit NSN
    ("+841900100001", "premium", None, True),
    ("+8418001234", "toll_free", None, False),
    ("113", "emergency", None, False),
    ("+84113", "emergency", None, False),
    ("5656", "short_code", None, False),
    ("+845656", "short_code", None, False),
    ("18001091", "short_code", None, False),  # a short code wins over the 1800 range
    ("+12025550123", "international", None, False),
    ("+447700900123", "international", None, False),
    ("+882123456789", "international_premium", None, False),
    ("+2521234567", "international_premium", None, False),
    ("+8432123456", "unallocated", None, False),  # mobile prefix, 8-digit NSN
    ("+843212345678", "unallocated", None, False),  # mobile prefix, 10-digit NSN
    ("+84246123456", "unallocated", None, False),  # fixed prefix, 9-digit NSN
    ("+84123456789", "unallocated", None, False),  # no allocated prefix
    ("+8419001234567", "unallocated", None, False),  # premium prefix, 11-digit NSN
    ("+8425", "unallocated", None, False),
    ("0912345678", "invalid", None, False),  # national format, no '+'
    ("84912345678", "invalid", None, False),
    ("+0912345678", "invalid", None, False),
    ("+12", "invalid", None, False),
    ("+1234567890123456", "invalid", None, False),  # 16 digits
    ("+84 912 345 678", "invalid", None, False),
    ("+84٩١٢٣٤٥٦٧٨", "invalid", None, False),  # Arabic-Indic digits are not E.164 digits
    ("+84912345678\n", "invalid", None, False),  # '$' alone would accept a trailing newline
    ("113\n", "invalid", None, False),
    (" +84912345678", "invalid", None, False),
    ("", "invalid", None, False),
    ("anonymous", "invalid", None, False),
    ("999", "invalid", None, False),  # bare digits that are not a plan short code
    (None, "invalid", None, False),
]


@pytest.fixture(scope="module")
def plan():
    return load_numbering_plan()


def test_cases_cover_every_kind() -> None:
    assert {kind for _, kind, _, _ in CASES} == set(NUMBER_KINDS)


@pytest.mark.parametrize(("number", "kind", "operator", "dno"), CASES)
def test_pure_classifier(plan, number, kind, operator, dno) -> None:
    info = plan.classify(number)
    assert info == NumberInfo(
        kind,
        operator,
        kind in {"mobile", "fixed", "premium", "toll_free", "emergency", "short_code", "unallocated"},
        dno,
    )


def test_pandas_agrees_with_pure(plan) -> None:
    numbers = pd.Series(
        [c[0] for c in CASES] + [12345, 3.5, float("nan")], dtype=object, index=range(100, 100 + len(CASES) + 3)
    )
    out = classify_series(numbers, plan)
    assert list(out.index) == list(numbers.index)
    assert list(out.columns) == ["kind", "operator", "is_domestic", "dno"]
    for number, row in zip(numbers, out.itertuples(), strict=True):
        info = plan.classify(number)
        assert (row.kind, row.operator, row.is_domestic, row.dno) == (
            info.kind,
            info.operator,
            info.is_domestic,
            info.do_not_originate,
        ), number


def test_pandas_on_empty_and_string_dtype(plan) -> None:
    assert len(classify_series(pd.Series([], dtype=object), plan)) == 0
    out = classify_series(pd.Series(["+84912345678", None], dtype="string"), plan)
    assert list(out["kind"]) == ["mobile", "invalid"]


@pytest.mark.spark
def test_spark_agrees_with_pure(spark, plan) -> None:
    from pyspark.sql import types as T

    numbers = [c[0] for c in CASES]
    df = spark.createDataFrame(
        [(i, n) for i, n in enumerate(numbers)],
        T.StructType([T.StructField("i", T.IntegerType()), T.StructField("n", T.StringType())]),
    )
    rows = (
        df.select(
            "i",
            cli_class_column("n", plan).alias("kind"),
            home_operator_column("n", plan).alias("op"),
            dno_column("n", plan).alias("dno"),
        )
        .orderBy("i")
        .collect()
    )
    for row in rows:
        info = plan.classify(numbers[row.i])
        assert (row.kind, row.op, row.dno) == (info.kind, info.operator, info.do_not_originate), numbers[row.i]


def test_helpers_for_the_simulator(plan) -> None:
    assert plan.operators == ("viettel", "vinaphone", "mobifone", "vietnamobile")
    assert "+8486" in plan.mobile_prefixes("viettel")
    assert plan.fixed_prefixes("vietnamobile") == ()
    assert plan.imsi_prefix("mobifone") == "45201"
    assert "+882" in plan.international_premium_prefixes
    assert isinstance(plan.do_not_originate, frozenset) and "+842439000001" in plan.do_not_originate
    assert set(plan.emergency_numbers) == {"112", "113", "114", "115"}
    assert "5656" in plan.short_codes
    with pytest.raises(KeyError, match="unknown operator 'djezzy'"):
        plan.mobile_prefixes("djezzy")
    # every generated mobile number classifies back to its operator
    for op in plan.operators:
        for prefix in plan.mobile_prefixes(op):
            number = prefix + "0" * (plan.mobile_nsn_length - (len(prefix) - 3))
            assert plan.classify(number) == NumberInfo("mobile", op, True, False)


def test_emergency_and_short_codes_always_allowlisted(plan) -> None:
    for code in (*plan.emergency_numbers, *plan.short_codes):
        assert plan.is_allowlisted_always(code)
        assert plan.is_allowlisted_always("+84" + code)
    assert not plan.is_allowlisted_always("+84912345678")
    assert not plan.is_allowlisted_always(None)  # type: ignore[arg-type]


def test_default_plan_is_cached(plan) -> None:
    assert load_numbering_plan() is plan
    assert load_numbering_plan(DEFAULT_PLAN_PATH) is not plan


def _write_plan(tmp_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(DEFAULT_PLAN_PATH.read_text(encoding="utf-8"))
    raw.update(changes)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_longest_prefix_wins(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_PLAN_PATH.read_text(encoding="utf-8"))
    raw["operators"]["vietnamobile"]["mobile_prefixes"].append("+84191")  # shorter than +841900
    plan = load_numbering_plan(_write_plan(tmp_path, operators=raw["operators"]))
    assert plan.classify("+841900123456").kind == "premium"
    assert plan.classify("+84191234567").operator == "vietnamobile"
    out = classify_series(pd.Series(["+841900123456", "+84191234567"]), plan)
    assert list(out["kind"]) == ["premium", "mobile"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"surprise": 1}, r"surprise: unknown key"),
        ({"premium_prefixes": ["841900"]}, r"premium_prefixes.*must be '\+' followed by digits"),
        ({"toll_free_prefixes": ["+11800"]}, r"not under the country code \+84"),
        ({"toll_free_prefixes": ["+841900"]}, r"\+841900 is allocated twice"),
        ({"do_not_originate": {"12345": "x"}}, r"do_not_originate.*not E.164"),
    ],
)
def test_bad_plan_is_one_line_config_error(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        load_numbering_plan(_write_plan(tmp_path, **changes))
    assert "\n" not in str(exc.value)
    assert str(tmp_path / "plan.yaml") in str(exc.value)


# -- properties (Hypothesis) ------------------------------------------------------------------

_PLAN = load_numbering_plan()
#: numbers near the plan: its prefixes and special codes with random tails, E.164-shaped strings,
#: and arbitrary text (other scripts' digits, whitespace, control characters)
_near_plan = st.builds(
    lambda prefix, tail: prefix + tail,
    st.sampled_from([r.prefix for r in _PLAN.prefix_rules()] + list(_PLAN.international_premium_prefixes)
                    + ["+84", "+1", "+44"] + list(_PLAN.special_numbers())),
    st.text(alphabet="0123456789", max_size=12),
)
numbers = st.one_of(_near_plan, st.from_regex(r"\+[0-9]{0,17}", fullmatch=True), st.text(max_size=20))


@given(number=numbers)
def test_classify_never_raises_and_invalid_means_not_e164(number: str) -> None:
    info = _PLAN.classify(number)
    assert info.kind in NUMBER_KINDS
    assert (info.operator is not None) == (info.kind in {"mobile", "fixed"})
    special = number in _PLAN.special_numbers()
    is_e164 = re.fullmatch(r"\+[1-9][0-9]{3,14}", number, flags=re.ASCII) is not None
    assert (info.kind == "invalid") == (not special and not is_e164)
    if is_e164 and not special:
        assert info.is_domestic == number.startswith(_PLAN.domestic_prefix)


def _allocated(rule) -> st.SearchStrategy[str]:
    """Numbers under ``rule``'s prefix with an NSN length the rule allows."""
    used = len(rule.prefix) - len(_PLAN.domestic_prefix)
    return st.sampled_from(sorted(rule.nsn_lengths)).flatmap(
        lambda n: st.text(alphabet="0123456789", min_size=n - used, max_size=n - used).map(lambda t: rule.prefix + t)
    )


allocated = st.sampled_from(_PLAN.prefix_rules()).flatmap(_allocated)


@given(number=allocated, where=st.integers(min_value=1),
       sep=st.sampled_from([" ", "-", ".", "\n", "\t", "\u00a0", "(", "٣"]))
def test_a_formatted_or_padded_number_is_not_silently_accepted(number: str, where: int, sep: str) -> None:
    """Classification is exact: separators, other digits or padding make a number invalid
    (a caller must normalise first), never another operator's number."""
    assert _PLAN.classify(number).kind in {"mobile", "fixed", "premium", "toll_free"}
    cut = 1 + where % (len(number) - 1)
    assert _PLAN.classify(number[:cut] + sep + number[cut:]).kind == "invalid"
    assert _PLAN.classify(number + sep).kind == "invalid" and _PLAN.classify(sep + number).kind == "invalid"


@given(values=st.lists(st.one_of(numbers, st.none(), st.integers(), st.floats()), max_size=30))
def test_pandas_agrees_with_pure_on_any_input(values: list[object]) -> None:
    series = pd.Series(values, dtype=object)
    out = classify_series(series, _PLAN)
    expected = [_PLAN.classify(v) for v in values]
    got = [NumberInfo(r.kind, r.operator, bool(r.is_domestic), bool(r.dno)) for r in out.itertuples()]
    assert got == expected


@given(number=allocated, cuts=st.lists(st.integers(min_value=1), max_size=4),
       seps=st.lists(st.sampled_from([" ", "-", ".", "(", ")"]), min_size=1, max_size=4))
def test_normalise_drops_visual_separators_only(number: str, cuts: list[int], seps: list[str]) -> None:
    """A number written with spaces, dashes, dots or brackets normalises to itself; the result
    is always a number the plan classifies, and normalising twice changes nothing."""
    formatted = number
    for cut, sep in zip(cuts, seps, strict=False):
        at = 1 + cut % (len(formatted) - 1)
        formatted = formatted[:at] + sep + formatted[at:]
    assert _PLAN.normalise(formatted) == number
    assert _PLAN.normalise(number) == number


@given(text=st.one_of(numbers, st.text(max_size=24)))
def test_normalise_returns_a_classifiable_number_or_none(text: str) -> None:
    out = _PLAN.normalise(text)
    if out is not None:
        assert _PLAN.classify(out).kind != "invalid"
        assert _PLAN.normalise(out) == out
        # only separators were taken out: the digits are the caller's, in order
        assert [c for c in text if c.isdigit() and c.isascii()] == [c for c in out if c.isdigit()]
