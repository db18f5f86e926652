"""The ingest job: map, validate, deduplicate and write one export (:func:`run_ingest`)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from features.errors import MappingError, SchemaError
from features.schema import FIELD_NAMES, arrow_schema
from features.validation import (
    ValidationRules,
    to_text,
    valid_to_arrow,
    validate_frame,
)
from pipeline.ingest.evaluate import map_rows
from pipeline.ingest.mapping import OperatorMapping, load_mapping
from pipeline.ingest.readers import _chunks, _read_csv, _read_csv_header, _read_jsonl, _Row

DEFAULT_MAX_AGE_DAYS = 3650.0
DEFAULT_MAX_FUTURE_S = 86400.0
CHUNK_ROWS = 50_000


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


#: characters JSON leaves raw in strings that many line readers (Python's ``splitlines``) take
#: for line ends: escaped, so each dead-letter entry stays on one line for every reader
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False, default=to_text).translate(_LINE_BREAKS) + "\n"


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
                dead_out.write(_json_line(entry))
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
