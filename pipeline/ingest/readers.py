"""Reading the input: CSV and JSON-lines rows with their line numbers, unreadable rows kept for the dead letter."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.errors import SchemaError
from features.validation import (
    to_text,
)
from pipeline.ingest.mapping import SourceSpec

_SURROGATE = re.compile("[\udc80-\udcff]")


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


class _Lines:
    """The physical lines the CSV reader pulls, kept until :meth:`take` (one record's text)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._lines: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._handle)
        self._lines.append(line)
        return line

    def take(self) -> str:
        text = "".join(self._lines)
        self._lines.clear()
        return text


def _never_closed(text: str, source: SourceSpec) -> bool:
    """Whether a record's text ends inside a quoted field: csv's lenient mode takes everything to
    the end of the file into that field, so the strict mode's complaint is the test."""
    try:
        list(csv.reader(io.StringIO(text), delimiter=source.delimiter, quotechar=source.quotechar, strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _read_csv(path: Path, source: SourceSpec, header: list[str], *, max_row_chars: int) -> Iterator[_Row]:
    old_limit = csv.field_size_limit()
    handle = path.open("r", encoding=source.encoding, errors="surrogateescape", newline="")
    try:
        # a huge field is reported as value_too_large below instead of stopping the reader
        csv.field_size_limit(2**31 - 1)
        lines = _Lines(handle)
        reader = _csv_reader(lines, source)
        names = [source.rename.get(h, h) for h in header]
        header_seen = False
        last_line = 0
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                lines.take()
                yield _Row(
                    last_line + 1, None, None, ("malformed_row", f"line {last_line + 1}: unreadable CSV ({exc})")
                )
                if reader.line_num == last_line:
                    return
                last_line = reader.line_num
                continue
            start, last_line = last_line + 1, reader.line_num
            text = lines.take()
            # a quote opened and never closed turns the rest of the file into one field: that is
            # a broken export, not one bad row, and counting it as one row would hide the rest
            if last_line > start and _never_closed(text, source):
                raise SchemaError(
                    f"{path}: line {start}: a quoted field is never closed and swallows the {last_line - start + 1} "
                    "lines to the end of the file; fix the quoting in the export"
                )
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


def _chunks(rows: Iterable[_Row], size: int) -> Iterator[list[_Row]]:
    rows = iter(rows)
    while chunk := list(itertools.islice(rows, size)):
        yield chunk
