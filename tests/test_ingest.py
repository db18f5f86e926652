"""Batch ingest: operator exports -> canonical Parquet; every row written or dead-lettered."""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.errors import MappingError, SchemaError
from features.schema import arrow_schema
from features.validation import REASON_CODES
from pipeline.cli import main
from pipeline.config import PROJECT_ROOT
from pipeline.ingest import load_mapping, run_ingest

DJEZZY_MAPPING = PROJECT_ROOT / "configs" / "mappings" / "djezzy_simbox.yaml"
NOW = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
ALGIERS = dt.timezone(dt.timedelta(hours=1))


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def read_dead(out: Path) -> list[dict[str, Any]]:
    text = (out / "dead_letter" / "dead_letter.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def read_summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "ingest_summary.json").read_text(encoding="utf-8"))


# -- the real operator sample -------------------------------------------------------------


def test_djezzy_sample_end_to_end(djezzy_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "djezzy"
    code, stdout, err = run_cli(
        ["ingest", "--mapping", str(DJEZZY_MAPPING), "--input", str(djezzy_sample), "--out", str(out)], capsys
    )
    assert code == 0, err
    assert "dead-lettered" in stdout

    with djezzy_sample.open(newline="", encoding="utf-8") as handle:
        source = list(csv.DictReader(handle))
    summary = read_summary(out)
    assert summary["rows_in"] == len(source) == summary["valid"] + summary["dead_lettered"]
    # every row of the sample maps (the mapping file documents how its codes were read)
    assert summary["dead_lettered"] == 0, read_dead(out)[:3]

    assert pq.read_schema(out / "cdrs" / "part-00000.parquet").equals(arrow_schema(), check_metadata=True)
    table = pq.read_table(out / "cdrs" / "part-00000.parquet", schema=arrow_schema())
    rows = table.to_pylist()
    assert len({r["record_id"] for r in rows}) == len(rows)

    # the mapping's semantics, checked against the source row by row (no sample data in here)
    by_id = {r["record_id"]: r for r in rows}
    for src in source:
        service = "voice" if src["Telesrvc"] in ("11", "12") else "sms"
        row = by_id[f"djezzy-{service}-{src['']}"]
        local = dt.datetime.strptime(src["Charging_Tm"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ALGIERS)
        assert row["start_time"] == local.astimezone(dt.UTC) == row["answer_time"]
        served = f"+2137{int(src['A_Num']):08d}"
        mt = src["Call_Type"] in ("1", "7")
        assert (row["b_number"] if mt else row["a_number"]) == served
        assert row["event_type"] == service
        assert row["duration_s"] == (0.0 if service == "sms" else float(src["Call_Duration"]))
        assert row["release_cause"] == "answered"
        if mt:
            assert row["a_imei"] is None and row["cell_id"] is None
            expected_trunk = {
                "ON-NET": "subscriber",
                "OTA-SHORT": "subscriber",
                "OFF-NET": "domestic_interconnect",
                "INTERNATIONAL": "international_gateway",
            }
            assert row["in_trunk_type"] == expected_trunk[src["DESTINATION_CAT"]]
        else:
            assert row["a_imsi"] == f"60302{int(src['A_Num']):010d}"
            assert row["cell_id"] == str(int(float(src["cell_id"])))
            assert row["in_trunk_type"] == "subscriber"


def test_djezzy_rows_outside_the_age_limit_are_dead_lettered(djezzy_sample: Path, tmp_path: Path) -> None:
    # a year after the sample, a 30-day limit (a live system's) rejects every row, with a reason
    summary = run_ingest(
        DJEZZY_MAPPING, djezzy_sample, tmp_path / "o", max_age_days=30, now=dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
    )
    assert summary.valid == 0
    assert summary.dead_by_reason == {"time_too_old": summary.rows_in}
    dead = read_dead(tmp_path / "o")
    assert dead[0]["record"]["Charging_Tm"] and dead[0]["mapped"]["operator"] == "djezzy"
    assert pq.read_table(tmp_path / "o" / "cdrs").num_rows == 0


# -- malformed input never crashes the ingest (Hypothesis) -------------------------------

DJEZZY_HEADER = [
    "",
    "Call_Type",
    "Charging_Tm",
    "Call_Duration",
    "Telesrvc",
    "LOCATION",
    "A_Num",
    "B_Num",
    "cell_id",
    "IMEI",
    "TAC",
    "DESTINATION_CAT",
    "is_fraud",
]


def _good_row(rng: random.Random, i: int) -> list[str]:
    call_type = rng.choice(["0", "1", "6", "7"])
    telesrvc = {"0": "11", "1": "11", "6": "22", "7": "21"}[call_type]
    start = dt.datetime(2024, 4, 20) + dt.timedelta(seconds=rng.randrange(5 * 86400))
    return [
        str(i),
        call_type,
        start.strftime("%Y-%m-%d %H:%M:%S"),
        f"{rng.uniform(1, 600):.6f}",
        telesrvc,
        str(rng.randrange(1, 60000)),
        str(rng.randrange(1, 20000)),
        str(rng.randrange(1, 300000)),
        f"{rng.randrange(7_000_000, 8_000_000)}.0",
        f"{rng.randrange(1, 20000)}.0",
        f"{rng.randrange(1, 6000)}.0",
        rng.choice(["ON-NET", "OFF-NET", "INTERNATIONAL", "OTA-SHORT"]),
        rng.choice(["0", "1"]),
    ]


def _csv_line(row: list[str]) -> str:
    import io

    buffer = io.StringIO()
    # the terminator's characters are what csv.writer quotes: a CR or LF in a cell stays in its cell
    csv.writer(buffer, lineterminator="\r\n").writerow(row)
    return buffer.getvalue().removesuffix("\r\n")


def _write_good_csv(path: Path, *, n: int) -> None:
    rng = random.Random(n)
    path.write_text("\n".join([",".join(DJEZZY_HEADER), *(_csv_line(_good_row(rng, i)) for i in range(n))]) + "\n")


#: what a broken export holds in one row; each draws its damage from Hypothesis
_WRONG_VALUE = st.one_of(
    st.sampled_from(["abc", "1e999", "nan", "12.5.3", "0x1F", "\u0663\u0664", "NULL", " "]),
    st.text(max_size=30),  # quotes, delimiters and line breaks too: csv.writer quotes them
)
_BAD_TIME = st.one_of(
    st.sampled_from(["yesterday", "2024-13-01 00:00:00", "2024-04-22T10:00:00", "24-04-22 10:00"]),
    # too old or in the future for the ingest's clock (NOW)
    st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2024, 3, 1))
    | st.datetimes(min_value=dt.datetime(2024, 5, 2), max_value=dt.datetime(2100, 1, 1)),
).map(lambda t: t if isinstance(t, str) else t.strftime("%Y-%m-%d %H:%M:%S"))


@st.composite
def _broken(draw: st.DrawFn, row: list[str]) -> list[str] | bytes:
    """``row`` as a bad export could hold it: a cell emptied, replaced or oversized, a bad time,
    a negative duration, an unknown code, too few or too many columns, or bytes not UTF-8."""
    col = draw(st.integers(1, len(row) - 1))  # column 0 is the record id
    kind = draw(st.sampled_from(["empty", "time", "negative", "huge", "value", "short", "long", "code", "bytes"]))
    if kind == "empty":
        row[col] = ""
    elif kind == "time":
        row[2] = draw(_BAD_TIME)
    elif kind == "negative":
        row[3] = f"-{draw(st.floats(0.001, 1000)):.3f}"
    elif kind == "huge":
        row[col] = "x" * draw(st.sampled_from([100, 70000]))
    elif kind == "value":
        row[col] = draw(_WRONG_VALUE)
    elif kind == "short":
        return row[: draw(st.integers(1, len(row) - 1))]
    elif kind == "long":
        return [*row, *draw(st.lists(st.text(max_size=5), min_size=1, max_size=3))]
    elif kind == "code":  # record type, teleservice, destination: unknown codes
        col = draw(st.sampled_from([1, 4, 11]))
        row[col] = draw(st.sampled_from(["2", "5", "99", "13", "MARS-NET"]) | st.text(max_size=8))
    else:
        line = _csv_line(row).encode()
        cut = draw(st.integers(0, len(line)))
        return line[:cut] + bytes([draw(st.integers(0x80, 0xFF))]) + line[cut:]
    return row


@st.composite
def _exports(draw: st.DrawFn) -> list[bytes]:
    """A Djezzy-layout CSV's lines (header first), any of its rows broken."""
    rng = draw(st.randoms(use_true_random=False))  # the valid parts of a row
    lines = [",".join(DJEZZY_HEADER).encode()]
    for i in range(draw(st.integers(1, 40))):
        row: list[str] | bytes = _good_row(rng, i)
        if draw(st.booleans()):
            row = draw(_broken(list(row)))
        lines.append(row if isinstance(row, bytes) else _csv_line(row).encode())
    return lines


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=_exports(), chunk_rows=st.integers(1, 50))
def test_any_csv_rows_are_all_accounted_for(lines: list[bytes], chunk_rows: int) -> None:
    """Every row of any export is a valid record or one dead-letter entry with a reason code,
    in chunks of any size; the outputs keep the contract's schema."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        data, out = Path(folder) / "in.csv", Path(folder) / "out"
        data.write_bytes(b"\n".join(lines) + b"\n")
        summary = run_ingest(DJEZZY_MAPPING, data, out, now=NOW, chunk_rows=chunk_rows)
        assert summary.rows_in == len(lines) - 1 == summary.valid + summary.dead_lettered
        dead = read_dead(out)
        assert len(dead) == summary.dead_lettered == sum(summary.dead_by_reason.values())
        assert all(d["reason_code"] in REASON_CODES and d["reason"] and "\n" not in d["reason"] for d in dead)
        table = pq.read_table(out / "cdrs")
        assert table.num_rows == summary.valid
        assert table.schema.equals(arrow_schema(), check_metadata=True)
        # each input row exactly once: distinct record ids, distinct dead-letter lines
        assert len(set(table.column("record_id").to_pylist())) == summary.valid
        assert len({d["line"] for d in dead}) == len(dead)
        # undecodable bytes are kept, escaped, in the dead letter's copy of the row
        assert all("\\x" in json.dumps(d["record"]) for d in dead if d["reason_code"] == "bad_encoding")


@pytest.mark.parametrize(
    ("change", "reason_code"),
    [
        ({6: ""}, "missing_field"),
        ({3: "1e999"}, "bad_type"),
        ({1: "5"}, "bad_enum"),
        ({3: "-4.5"}, "negative_duration"),
        ({8: "x" * 70000}, "value_too_large"),
        ({2: "1970-01-01 00:00:00"}, "time_too_old"),
        ({2: "2100-01-01 00:00:00"}, "time_in_future"),
        ("short", "malformed_row"),
        ("bytes", "bad_encoding"),
    ],
)
def test_each_kind_of_damage_has_its_reason(tmp_path: Path, change: dict[int, str] | str, reason_code: str) -> None:
    row = _good_row(random.Random(1), 0)
    if change == "short":
        line = _csv_line(row[:5]).encode()
    elif change == "bytes":
        line = _csv_line(row).encode().replace(b",", b",\xff", 1)  # a byte that is not UTF-8
    else:
        line = _csv_line([change.get(i, v) for i, v in enumerate(row)]).encode()
    data = tmp_path / "in.csv"
    data.write_bytes(b"\n".join([",".join(DJEZZY_HEADER).encode(), line]) + b"\n")
    summary = run_ingest(DJEZZY_MAPPING, data, tmp_path / "out", now=NOW)
    assert (summary.valid, summary.dead_by_reason) == (0, {reason_code: 1}), read_dead(tmp_path / "out")


def test_ingest_cli_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "in.csv"
    _write_good_csv(data, n=20)
    argv = ["ingest", "-m", str(DJEZZY_MAPPING), "-i", str(data), "-o", str(tmp_path / "o"), "--max-age-days", "100000"]
    assert run_cli(argv, capsys)[0] == 0
    code, _, err = run_cli(argv, capsys)
    assert code != 0 and "already exists" in err and err.count("\n") == 1
    assert run_cli([*argv, "--overwrite"], capsys)[0] == 0


# -- mapping errors are one line naming the file and the field ----------------------------


def _mapping(tmp_path: Path, raw: dict[str, Any], name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _djezzy_raw() -> dict[str, Any]:
    return yaml.safe_load(DJEZZY_MAPPING.read_text(encoding="utf-8"))


def test_bad_mapping_file_through_the_console_script(tmp_path: Path) -> None:
    raw = _djezzy_raw()
    raw["fields"]["a_number"]["colour"] = "blue"
    mapping = _mapping(tmp_path, raw)
    data = tmp_path / "in.csv"
    _write_good_csv(data, n=3)
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "simguard"),
            "ingest",
            "-m",
            str(mapping),
            "-i",
            str(data),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert str(mapping) in proc.stderr and "fields.a_number.colour: unknown key" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["fields"].update(colour={"constant": "x"}), r"fields: 'colour' is not a canonical field"),
        (lambda m: m["fields"].pop("b_number"), r"required canonical field 'b_number' has no mapping"),
        (
            lambda m: m["fields"]["operator"].update(column="operator"),
            r"fields.operator: .*exactly one of column, constant, template",
        ),
        (
            lambda m: m["fields"].update(record_id={"template": "x-{index:08q}"}),
            r"fields.record_id.template: .*bad format",
        ),
        (lambda m: m["fields"].update(record_id={"template": "x-{a.b}"}), r"must be a column name"),
        (lambda m: m["source"].update(timezone="Mars/Olympus"), r"source.timezone: .*unknown time zone"),
        (lambda m: m["source"].update(format="xml"), r"source.format: "),
        (
            lambda m: m["derive"].update(direction={"column": "service"}),
            r"derive: .*derive.direction uses 'service', which is derived later",
        ),
        (lambda m: m["fields"]["release_cause"]["cases"][0].update(when={}), r"when: "),
    ],
)
def test_bad_mapping_is_one_line(tmp_path: Path, change: Any, message: str) -> None:
    raw = _djezzy_raw()
    change(raw)
    path = _mapping(tmp_path, raw)
    with pytest.raises(MappingError, match=message) as exc:
        load_mapping(path)
    assert str(exc.value).startswith(f"{path}: ") and "\n" not in str(exc.value)


def test_column_missing_from_input_names_mapping_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "in.csv"
    data.write_text(",Call_Type,Charging_Tm\n1,0,2024-04-22 10:00:00\n", encoding="utf-8")
    code, _, err = run_cli(["ingest", "-m", str(DJEZZY_MAPPING), "-i", str(data), "-o", str(tmp_path / "o")], capsys)
    assert code != 0 and err.count("\n") == 1
    assert err.startswith(f"error: {DJEZZY_MAPPING}: derive.service: column 'Telesrvc' is not in the input header")


def test_empty_input_is_one_line_error(tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    data.write_bytes(b"")
    with pytest.raises(SchemaError, match="no header row"):
        run_ingest(DJEZZY_MAPPING, data, tmp_path / "o")


# -- the mapping language on a small generic layout ---------------------------------------

GENERIC = {
    "source": {"format": "jsonl", "timestamp_format": "epoch_ms"},
    "fields": {
        "record_id": {"column": "id"},
        "operator": {"constant": "viettel"},
        "event_type": {"column": "svc", "map": {"1": "voice", "2": "sms"}},
        "a_number": {"template": "+84{caller:09d}"},
        "b_number": {"column": "callee"},
        "start_time": {"column": "t"},
        "answer_time": {"cases": [{"when": {"dur_ms": {"gt": 0}}, "column": "t"}]},
        "duration_s": {"column": "dur_ms", "scale": 0.001},
        "release_cause": {
            "cases": [{"when": {"dur_ms": {"gt": 0}}, "constant": "answered"}],
            "otherwise": {"constant": "no_answer"},
        },
        "in_trunk_type": {"column": "trunk", "map": {"S": "subscriber", "I": "international_gateway"}},
        "a_roaming": {"column": "roam"},
    },
}


def _generic(**changes: Any) -> dict[str, Any]:
    record = {
        "id": "r1",
        "svc": 1,
        "caller": 912345678,
        "callee": "+84321234567",
        "t": 1714550400000,
        "dur_ms": 61500,
        "trunk": "S",
        "roam": False,
    }
    record.update(changes)
    return record


def test_jsonl_mapping_with_scale_epoch_and_types(tmp_path: Path) -> None:
    mapping = _mapping(tmp_path, GENERIC)
    lines = [
        json.dumps(_generic()),
        json.dumps(_generic(id="r2", dur_ms=0, roam="yes")),  # a boolean as text is fine for a mapping
        json.dumps(_generic(id="r3", svc=3)),  # not in the code table
        json.dumps(_generic(id="r4", caller="91x")),  # template needs an integer
        json.dumps(_generic(id="r5", roam="maybe")),
        json.dumps(_generic(id="r6", t="noon")),
        json.dumps(_generic(id="r1")),  # duplicate id
        "[1, 2]",
        "{not json",
        "",  # blank lines are not rows
        json.dumps(_generic(id="r7", trunk=None)),
    ]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = run_ingest(mapping, data, tmp_path / "o", now=NOW)
    assert summary.rows_in == 10 and summary.valid == 2
    rows = pq.read_table(tmp_path / "o" / "cdrs").to_pylist()
    assert rows[0]["duration_s"] == 61.5 and rows[0]["a_number"] == "+84912345678"
    assert rows[0]["start_time"] == dt.datetime(2024, 5, 1, 8, tzinfo=dt.UTC) == rows[0]["answer_time"]
    assert rows[1]["release_cause"] == "no_answer" and rows[1]["answer_time"] is None and rows[1]["a_roaming"] is True
    dead = {d["line"]: d for d in read_dead(tmp_path / "o")}
    assert {line: d["reason_code"] for line, d in dead.items()} == {
        3: "bad_enum",
        4: "bad_type",
        5: "bad_type",
        6: "bad_type",
        7: "duplicate_record",
        8: "bad_json",
        9: "bad_json",
        11: "missing_field",
    }
    assert dead[3]["reason"].startswith("event_type: '3' is not in the mapping's table")
    assert dead[7]["reason"] == "record_id 'r1' already used by line 1"
    assert dead[11]["reason"] == "in_trunk_type: no value (column trunk is empty)"
    assert dead[4]["record"]["caller"] == "91x"


def test_local_time_conversion_and_clock_changes(tmp_path: Path) -> None:
    raw = json.loads(json.dumps(GENERIC))
    raw["source"] = {"format": "csv", "timestamp_format": "%d/%m/%Y %H:%M", "timezone": "Europe/Paris"}
    raw["fields"]["a_number"] = {"column": "caller"}
    raw["fields"]["duration_s"] = {"column": "dur_ms", "scale": 0.001}
    mapping = _mapping(tmp_path, raw)
    data = tmp_path / "in.csv"
    data.write_text(
        "id,svc,caller,callee,t,dur_ms,trunk,roam\n"
        "a,1,+84912345678,+84321234567,15/01/2024 10:00,0,S,false\n"  # CET: UTC+1
        "b,1,+84912345678,+84321234567,15/07/2024 10:00,0,S,false\n"  # CEST: UTC+2
        "c,1,+84912345678,+84321234567,31/03/2024 02:30,0,S,false\n"  # skipped by the clock
        "d,1,+84912345678,+84321234567,27/10/2024 02:30,0,S,false\n"  # happens twice
        'e,1,+84912345678,+84321234567,"15/07/2024 10:00",1.5e3,I,true\n',
        encoding="utf-8",
    )
    summary = run_ingest(mapping, data, tmp_path / "o", now=NOW + dt.timedelta(days=200))
    rows = {r["record_id"]: r for r in pq.read_table(tmp_path / "o" / "cdrs").to_pylist()}
    assert rows["a"]["start_time"] == dt.datetime(2024, 1, 15, 9, tzinfo=dt.UTC)
    assert rows["b"]["start_time"] == dt.datetime(2024, 7, 15, 8, tzinfo=dt.UTC)
    assert rows["e"]["duration_s"] == 1.5 and rows["e"]["in_trunk_type"] == "international_gateway"
    reasons = {d["record"]["id"]: d["reason"] for d in read_dead(tmp_path / "o")}
    assert "does not exist in Europe/Paris" in reasons["c"]
    assert "ambiguous in Europe/Paris" in reasons["d"]
    assert summary.rows_in == 5 == summary.valid + summary.dead_lettered


def test_no_case_matched_says_why(tmp_path: Path) -> None:
    data = tmp_path / "in.csv"
    header = DJEZZY_HEADER
    row = dict.fromkeys(header, "1")
    row.update(
        {
            "": "5",
            "Call_Type": "0",
            "Charging_Tm": "2024-04-22 10:00:00",
            "Call_Duration": "3.5",
            "Telesrvc": "11",
            "DESTINATION_CAT": "MARS-NET",
        }
    )
    data.write_text(",".join(header) + "\n" + ",".join(row[h] for h in header) + "\n", encoding="utf-8")
    run_ingest(DJEZZY_MAPPING, data, tmp_path / "o", now=NOW)
    (dead,) = read_dead(tmp_path / "o")
    assert dead["reason_code"] == "missing_field"
    assert dead["reason"] == "b_number: no value (no case of derive.other_number matched (DESTINATION_CAT='MARS-NET'))"


def test_csv_quirks(tmp_path: Path) -> None:
    raw = json.loads(json.dumps(GENERIC))
    raw["source"] = {
        "format": "csv",
        "rename": {"ident": "id"},
        "timestamp_format": "iso8601",
        "null_values": ["", "NULL"],
    }
    raw["fields"]["a_number"] = {"column": "caller"}
    raw["fields"]["duration_s"] = {"column": "dur_ms", "scale": 0.001}
    mapping = _mapping(tmp_path, raw)
    header = "ident,svc,caller,callee,t,dur_ms,trunk,roam\r\n"
    body = (
        "a,1,+84912345678,+84321234567,2024-04-30T10:00:00+07:00,0,S,false\r\n"  # an offset in the text wins
        "\r\n"  # a blank line is not a row
        '"b\nmulti-line id",1,+84912345678,+84321234567,2024-04-30T10:00:00Z,0,S,false\r\n'
        "c,1,+84912345678,+84321234567,2024-04-30T10:00:00,0,S,false\r\n"  # no offset: source zone (UTC)
        "d,1,+84912345678,+84321234567,2024-04-30T10:00:00Z,NULL,S,false\r\n"
        "e\x00,1,+84912345678,+84321234567,2024-04-30T10:00:00Z,1e999,S,false\r\n"
        'f,1,+84912345678,+84321234567,2024-04-30T10:00:00Z,0,S,"false'  # unterminated quote at EOF
    )
    data = tmp_path / "in.csv"
    data.write_bytes(b"\xef\xbb\xbf" + (header + body).encode())  # with a UTF-8 byte-order mark
    summary = run_ingest(mapping, data, tmp_path / "o", now=NOW)
    assert summary.rows_in == 6 == summary.valid + summary.dead_lettered
    rows = {r["record_id"]: r for r in pq.read_table(tmp_path / "o" / "cdrs").to_pylist()}
    assert rows["a"]["start_time"] == dt.datetime(2024, 4, 30, 3, tzinfo=dt.UTC)
    assert rows["c"]["start_time"] == dt.datetime(2024, 4, 30, 10, tzinfo=dt.UTC)
    # an unterminated quote at the end of the file still yields the row (csv's lenient mode)
    assert set(rows) == {"a", "b\nmulti-line id", "c", "f"}
    dead = {d["line"]: d for d in read_dead(tmp_path / "o")}
    assert sorted(dead) == [7, 8]  # lines as in the file: the blank and the multi-line rows count
    assert (dead[7]["reason_code"], dead[7]["reason"]) == (
        "missing_field",
        "duration_s: no value (column dur_ms is empty)",
    )
    # the dead letter keeps the row as written: original header names, the null text itself
    assert dead[7]["record"]["ident"] == "d" and dead[7]["record"]["dur_ms"] == "NULL"
    assert (dead[8]["reason_code"], dead[8]["reason"]) == (
        "bad_type",
        "duration_s: '1e999' is not a finite number (to scale by 0.001)",
    )
    assert dead[8]["record"]["ident"] == "e\x00"


# -- hostile input: alias bombs, huge format widths, a quote that swallows the file -------


def test_alias_bomb_mapping_is_refused_quickly(tmp_path: Path) -> None:
    # each layer is nine references to the one before: 9**6 strings once expanded (a billion
    # laughs with fewer layers, so that the code before the fix survives this test too)
    layers = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    layers += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 7)]
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "\n".join(layers)
        + "\nsource: {format: csv}\nfields: {record_id: {cases: [{when: {Call_Type: *a6}, constant: x}]}}\n",
        encoding="utf-8",
    )
    started = time.monotonic()
    with pytest.raises(MappingError, match=r"line 2: .*aliases") as exc:
        load_mapping(path)
    assert time.monotonic() - started < 2 and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{A_Num:99999999999d}", r"width 99999999999 .*at most 64"),
        ("{A_Num:.99999999999f}", r"precision 99999999999 .*at most 64"),
        ("{A_Num:0100000d}", r"width 100000 .*at most 64"),
        ("{A_Num:>,=d}", r"bad format"),
    ],
)
def test_template_format_specs_are_bounded(tmp_path: Path, template: str, message: str) -> None:
    raw = _djezzy_raw()
    raw["fields"]["record_id"] = {"template": template}
    path = _mapping(tmp_path, raw)
    with pytest.raises(MappingError, match=message) as exc:
        load_mapping(path)
    assert "fields.record_id.template" in str(exc.value) and "\n" not in str(exc.value)


def test_a_quote_that_swallows_the_rest_of_the_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(3)
    lines = [",".join(DJEZZY_HEADER) + "\n"] + [_csv_line(_good_row(rng, i)) + "\n" for i in range(40)]
    lines[10] = lines[10].replace(",", ',"', 1)  # line 11 opens a quote that never closes
    data = tmp_path / "in.csv"
    data.write_text("".join(lines), encoding="utf-8")
    argv = ["ingest", "-m", str(DJEZZY_MAPPING), "-i", str(data), "-o", str(tmp_path / "o"), "--max-age-days", "100000"]
    code, _, err = run_cli(argv, capsys)
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
    assert "line 11" in err and f"{len(lines) - 10} lines" in err
    assert not (tmp_path / "o" / "ingest_summary.json").exists()


def test_dead_letters_stay_one_per_line_with_unicode_line_breaks_in_a_row(tmp_path: Path) -> None:
    """A rejected row holding U+0085, U+2028 or U+2029 (raw in JSON strings, but line ends to
    Python's ``splitlines`` and other readers) is still one dead-letter line, its text intact."""
    row = _good_row(random.Random(1), 0)
    line = _csv_line([*row[:-1], "x\u0085y\u2028z\u2029"]).encode()
    bad = _csv_line([*row[:5], "\u2028"]).encode()
    data = tmp_path / "in.csv"
    data.write_bytes(b"\n".join([",".join(DJEZZY_HEADER).encode(), line, bad]) + b"\n")
    summary = run_ingest(DJEZZY_MAPPING, data, tmp_path / "out", now=NOW)
    dead = read_dead(tmp_path / "out")
    assert len(dead) == summary.dead_lettered >= 1
    assert any("\u2028" in json.dumps(d["record"], ensure_ascii=False) for d in dead)
