"""Per-record validation: every record is valid or dead-lettered with a reason, never lost."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.schema import CDR_FIELDS, FIELD_NAMES, arrow_schema, record_to_json
from features.validation import (
    DEAD_LETTER_COLUMNS,
    REASON_CODES,
    ValidationRules,
    valid_to_arrow,
    validate_frame,
    validate_json_values,
)

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def good(**changes: Any) -> dict[str, Any]:
    start = NOW - dt.timedelta(hours=1)
    record = {
        "record_id": "r-1",
        "operator": "viettel",
        "event_type": "voice",
        "a_number": "+84912345678",
        "b_number": "+84321234567",
        "a_imsi": "452040000000001",
        "a_imei": "356938035643809",
        "start_time": start,
        "answer_time": start + dt.timedelta(seconds=6),
        "duration_s": 42.5,
        "release_cause": "answered",
        "cell_id": "4520-1234",
        "lac": "1201",
        "in_trunk_type": "subscriber",
        "in_trunk_id": None,
        "a_roaming": False,
    }
    record.update(changes)
    return record


def as_json(**changes: Any) -> bytes:
    """A Kafka value: the good record, then raw JSON-level changes (wrong types stay wrong)."""
    obj = json.loads(record_to_json(good()))
    for key, value in changes.items():
        if value is _DROP:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


_DROP = object()
NOT_ANSWERED = {"release_cause": "no_answer", "answer_time": None, "duration_s": 0}

# (JSON changes, expected reason code); each is one record
BAD_JSON_CASES: list[tuple[dict[str, Any], str]] = [
    ({"record_id": _DROP}, "missing_field"),
    ({"a_number": None}, "missing_field"),
    ({"record_id": "   "}, "missing_field"),
    ({"start_time": _DROP}, "missing_field"),
    ({"record_id": 17}, "bad_type"),
    ({"a_number": 84912345678}, "bad_type"),
    ({"duration_s": "42"}, "bad_type"),
    ({"duration_s": True}, "bad_type"),
    ({"duration_s": [1]}, "bad_type"),
    ({"a_roaming": "false"}, "bad_type"),
    ({"a_roaming": 0}, "bad_type"),
    ({"start_time": 1714557600}, "bad_type"),
    ({"start_time": "2024-05-01 11:00:00"}, "bad_type"),  # no offset: zone unknown
    ({"start_time": "yesterday"}, "bad_type"),
    ({"start_time": "2024-05-01"}, "bad_type"),  # a date, no time and no offset
    ({"start_time": "2024-02-30T10:00:00Z"}, "bad_type"),
    ({"a_imsi": "45204abc"}, "bad_type"),
    ({"a_imei": "12"}, "bad_type"),
    ({"cell_id": "\ud800"}, "bad_encoding"),  # a JSON escape that decodes to a lone surrogate
    ({"cell_id": "x" * 65}, "value_too_large"),
    ({"duration_s": 86401}, "value_too_large"),
    ({"duration_s": 10**400}, "value_too_large"),
    ({"event_type": "fax"}, "bad_enum"),
    ({"release_cause": "ANSWERED"}, "bad_enum"),
    ({"in_trunk_type": "satellite"}, "bad_enum"),
    ({"operator": "Viettel"}, "bad_enum"),
    ({"a_number": "0912345678"}, "bad_e164"),
    ({"b_number": "+84 912 345 678"}, "bad_e164"),
    ({"a_number": "+84912345678\n"}, "bad_e164"),
    ({"duration_s": -1}, "negative_duration"),
    ({"start_time": "1970-01-01T00:00:00Z", "answer_time": "1970-01-01T00:00:05Z"}, "time_too_old"),
    ({"start_time": "2100-01-01T00:00:00Z", "answer_time": "2100-01-01T00:00:05Z"}, "time_in_future"),
    ({"answer_time": "2024-05-01T10:59:00Z"}, "answer_before_start"),
    ({"answer_time": None}, "duration_inconsistent"),  # answered, no answer time
    ({**NOT_ANSWERED, "answer_time": "2024-05-01T11:00:06Z"}, "duration_inconsistent"),
    ({**NOT_ANSWERED, "duration_s": 3}, "duration_inconsistent"),
    ({"duration_s": 0}, "duration_inconsistent"),  # answered voice call of 0 s
    ({"event_type": "sms", "duration_s": 2}, "duration_inconsistent"),
    ({"surprise": 1}, "unknown_field"),
]


def test_good_json_round_trip() -> None:
    res = validate_json_values([record_to_json(good())], now=NOW)
    assert len(res.dead) == 0
    row = res.valid.iloc[0].to_dict()
    assert row == {
        **good(),
        "start_time": pd.Timestamp(good()["start_time"]),
        "answer_time": pd.Timestamp(good()["answer_time"]),
    }
    assert valid_to_arrow(res.valid).schema.equals(arrow_schema(), check_metadata=True)


def test_accepted_variants() -> None:
    values = [
        as_json(duration_s=42),  # an int duration is a number
        as_json(**NOT_ANSWERED),
        as_json(event_type="sms", duration_s=0),
        as_json(a_number="5656", b_number="113"),  # bare short codes
        as_json(a_imsi=_DROP, a_imei=_DROP, cell_id=_DROP),  # nullable keys may be absent
        as_json(start_time="2024-05-01T13:00:00+02:00", answer_time="2024-05-01T11:00:06.5+00:00"),
        as_json(a_number="+84123456789"),  # unallocated: the spoofing detector's business
    ]
    res = validate_json_values(values, now=NOW)
    assert res.dead["reason"].tolist() == []
    assert len(res.valid) == len(values)
    assert res.valid.loc[5, "start_time"] == pd.Timestamp("2024-05-01T11:00:00Z")
    assert res.valid.loc[5, "answer_time"] == pd.Timestamp("2024-05-01T11:00:06.5Z")


@pytest.mark.parametrize(
    ("changes", "code"), BAD_JSON_CASES, ids=[f"{c}-{i}" for i, (_, c) in enumerate(BAD_JSON_CASES)]
)
def test_bad_json_record_is_dead_with_its_reason(changes: dict[str, Any], code: str) -> None:
    res = validate_json_values([as_json(**changes)], now=NOW)
    assert len(res.valid) == 0
    assert res.dead["reason_code"].tolist() == [code], res.dead["reason"].tolist()
    reason = res.dead["reason"].iloc[0]
    assert reason and "\n" not in reason


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"{", "bad_json"),
        (b"", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'"text"', "bad_json"),
        (b'{"duration_s": NaN}', "bad_json"),
        (b"[" * 50000 + b"]" * 50000, "value_too_large"),
        (b"[" * 20000 + b"]" * 20000, "bad_json"),  # deep nesting, under the size limit
        (b'{"record_id": "' + b"9" * 5000 + b'"}', "missing_field"),
        (b"\xff\xfe{}", "bad_encoding"),
        (b'{"record_id": "caf\xe9"}', "bad_encoding"),
        (b" " * (1 << 20), "value_too_large"),  # 1 MB
        (None, "bad_json"),  # tombstone
        (12, "bad_type"),
    ],
)
def test_raw_values(value: Any, code: str) -> None:
    res = validate_json_values([value], now=NOW)
    assert res.dead["reason_code"].tolist() == [code]
    assert res.valid.empty


def test_overflowing_json_float_is_not_finite() -> None:
    value = record_to_json(good()).replace(b'"duration_s":42.5', b'"duration_s":1e400')
    assert b"1e400" in value
    res = validate_json_values([value], now=NOW)
    assert res.dead["reason"].tolist() == ["duration_s: 'inf' is not a finite number"]


def test_dead_keeps_every_field_as_text_and_the_raw_value() -> None:
    value = as_json(duration_s="42", cell_id="\u00e9\u4e2d")
    res = validate_json_values([value], now=NOW)
    dead = res.dead
    assert list(dead.columns) == list(DEAD_LETTER_COLUMNS)
    row = dead.iloc[0]
    assert row["duration_s"] == "42" and row["cell_id"] == "\u00e9\u4e2d"
    assert row["start_time"] == "2024-05-01T11:00:00.000000Z"
    assert json.loads(row["raw"]) == json.loads(value)
    assert row["reason"] == "duration_s: expected a number, got string '42'"


def test_frame_input_typed_like_the_contract() -> None:
    records = [good(record_id=f"r-{i}") for i in range(3)] + [good(record_id="bad", duration_s=-3)]
    df = pd.DataFrame(records, index=[10, 11, 12, 13])
    res = validate_frame(df, now=NOW)
    assert list(res.valid.index) == [10, 11, 12]
    assert list(res.dead.index) == [13]
    assert res.dead.loc[13, "reason_code"] == "negative_duration"
    assert res.dead.loc[13, "raw"] is None
    types = {name: str(t) for name, t in res.valid.dtypes.items()}
    assert types["start_time"] == "datetime64[us, UTC]" and types["duration_s"] == "float64"
    assert types["a_roaming"] == "bool"
    assert list(res.valid.columns) == list(FIELD_NAMES)
    table = valid_to_arrow(res.valid)
    assert table.schema.equals(arrow_schema(), check_metadata=True)
    assert table.column("start_time")[0].as_py() == good()["start_time"]


def test_frame_with_pandas_typed_columns() -> None:
    df = pd.DataFrame([good(), good(answer_time=None, release_cause="busy", duration_s=0)])
    df["start_time"] = pd.to_datetime(df["start_time"], utc=True)
    df["answer_time"] = pd.to_datetime(df["answer_time"], utc=True)  # NaT where not answered
    res = validate_frame(df, now=NOW)
    assert res.dead.empty, res.dead["reason"].tolist()
    assert res.valid["answer_time"].isna().tolist() == [False, True]


def test_frame_rules() -> None:
    rules = ValidationRules(operators=frozenset({"mobifone"}), max_duration_s=60, max_past_days=1)
    df = pd.DataFrame(
        [
            good(),
            good(operator="mobifone", duration_s=61),
            good(
                operator="mobifone",
                start_time=NOW - dt.timedelta(days=2),
                answer_time=NOW - dt.timedelta(days=2) + dt.timedelta(seconds=1),
            ),
        ]
    )
    res = validate_frame(df, now=NOW, rules=rules)
    assert res.dead["reason_code"].tolist() == ["bad_enum", "value_too_large", "time_too_old"]
    # the absolute floor holds whatever the age limit says
    rules = ValidationRules(max_past_days=1e6)
    old = good(
        start_time=dt.datetime(1970, 1, 1, tzinfo=dt.UTC), answer_time=dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    )
    assert validate_frame(pd.DataFrame([old]), now=NOW, rules=rules).dead["reason_code"].tolist() == ["time_too_old"]


def test_missing_columns_and_empty_frame() -> None:
    res = validate_frame(pd.DataFrame({"record_id": ["x"]}), now=NOW)
    assert res.dead["reason_code"].tolist() == ["missing_field"]
    empty = validate_frame(pd.DataFrame(), now=NOW)
    assert empty.valid.empty and empty.dead.empty
    assert valid_to_arrow(empty.valid).schema.equals(arrow_schema())


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_frame(pd.DataFrame([good()]), now=dt.datetime(2024, 5, 1))


def test_input_not_mutated() -> None:
    df = pd.DataFrame([good(), good(duration_s="x")])
    before = df.copy(deep=True)
    validate_frame(df, now=NOW)
    pd.testing.assert_frame_equal(df, before)


# -- properties (Hypothesis) ---------------------------------------------------------------

_GOOD = json.loads(record_to_json(good()))
_GOOD_BYTES = record_to_json(good())
#: JSON values a field may be given: every JSON type, date-like and E.164-like strings, enums
_garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2300, 1, 1)).flatmap(
        lambda d: st.sampled_from(["Z", "+01:00", "", "-23:59"]).map(lambda z: d.isoformat() + z)
    ),
    st.from_regex(r"\+[0-9]{0,17}", fullmatch=True),
    st.sampled_from(["voice", "sms", "answered", "no_answer", "subscriber", "viettel", "", "113"]),
)


@st.composite
def _edited_json(draw: st.DrawFn) -> bytes:
    """The good record with some fields replaced by any JSON value, dropped, or one added."""
    obj = dict(_GOOD)
    for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=4, unique=True)):
        if draw(st.booleans()) and draw(st.booleans()):
            obj.pop(key)
        else:
            obj[key] = draw(_garbage)
    if draw(st.integers(0, 19)) == 0:
        obj["extra"] = 1
    return json.dumps(obj, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@st.composite
def _damaged_bytes(draw: st.DrawFn) -> bytes:
    """The good record's bytes with a few bytes overwritten, or cut short."""
    data = bytearray(_GOOD_BYTES)
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


kafka_values = st.one_of(st.binary(max_size=64), _damaged_bytes(), _edited_json(), st.just(_GOOD_BYTES))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(kafka_values, max_size=40))
def test_any_kafka_values_are_valid_or_dead_lettered_never_lost(values: list[bytes]) -> None:
    res = validate_json_values(values, now=NOW)
    assert sorted([*res.valid.index, *res.dead.index]) == list(range(len(values)))
    assert set(res.dead["reason_code"]) <= set(REASON_CODES)
    assert res.dead["reason"].map(lambda r: isinstance(r, str) and r != "" and "\n" not in r).all()
    # the unchanged record is always valid
    assert all(i in res.valid.index for i, v in enumerate(values) if v == _GOOD_BYTES)
    # both outputs are writable: valid as the contract, dead as plain strings
    valid_to_arrow(res.valid)
    pa.Table.from_pandas(res.dead, preserve_index=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), values=st.lists(kafka_values, min_size=1, max_size=30))
def test_validation_is_per_record_whatever_the_order(data: st.DataObject, values: list[bytes]) -> None:
    order = np.array(data.draw(st.permutations(range(len(values)))))
    straight = validate_json_values(values, now=NOW)
    shuffled = validate_json_values([values[i] for i in order], now=NOW)
    # map the shuffled positions back to the original ones and compare record by record
    shuffled.dead.index = order[shuffled.dead.index]
    shuffled.valid.index = order[shuffled.valid.index]
    pd.testing.assert_frame_equal(straight.dead.sort_index(), shuffled.dead.sort_index())
    pd.testing.assert_frame_equal(straight.valid.sort_index(), shuffled.valid.sort_index())


@settings(max_examples=60, deadline=None)
@given(
    duration=st.floats(min_value=0.001, max_value=86400),
    # within the default rules: up to 30 days old, up to 900 s of clock skew ahead
    age=st.timedeltas(min_value=dt.timedelta(seconds=-800), max_value=dt.timedelta(days=29, hours=23)),
    a_number=st.from_regex(r"\+[1-9][0-9]{3,14}", fullmatch=True),
    record_id=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")),
                      min_size=1, max_size=64),
)
def test_any_well_formed_answered_call_is_valid_and_kept_as_given(
    duration: float, age: dt.timedelta, a_number: str, record_id: str
) -> None:
    start = NOW - age
    record = good(record_id=record_id, a_number=a_number, start_time=start,
                  answer_time=start + dt.timedelta(seconds=1), duration_s=duration)
    res = validate_json_values([record_to_json(record)], now=NOW)
    assert res.dead.empty, res.dead.to_dict("records")
    row = res.valid.iloc[0]
    assert (row["record_id"], row["a_number"], row["duration_s"]) == (record_id, a_number, duration)


def test_frame_with_arbitrary_python_objects() -> None:
    garbage: list[Any] = [np.array([1, 2]), object(), b"bytes", {"a": 1}, dt.date(2024, 5, 1)]
    nulls: list[Any] = [pd.NA, float("nan")]
    records = [good(**{name: value}) for value in garbage + nulls for name in FIELD_NAMES]
    res = validate_frame(pd.DataFrame(records, dtype=object), now=NOW)
    assert len(res.valid) + len(res.dead) == len(records)
    # no field accepts any of these values
    assert set(res.dead.index) >= set(range(len(garbage) * len(FIELD_NAMES)))
    # a null is fine in a nullable field, except answer_time of an answered call
    null_ok = [f.name for f in CDR_FIELDS if f.nullable and f.name != "answer_time"]
    assert sorted(res.valid["record_id"].value_counts().items()) == [("r-1", len(nulls) * len(null_ok))]
    assert set(res.dead["reason_code"]) == {"bad_type", "missing_field", "duration_inconsistent"}
    pa.Table.from_pandas(res.dead, preserve_index=False)
