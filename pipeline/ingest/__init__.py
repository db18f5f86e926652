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

Modules: ``mapping`` (the schema of a mapping file and its loader), ``evaluate`` (a mapping
applied to a chunk of rows), ``readers`` (CSV and JSON-lines input), ``job`` (:func:`run_ingest`).
"""

from __future__ import annotations

from pipeline.ingest.evaluate import map_rows
from pipeline.ingest.job import CHUNK_ROWS, DEFAULT_MAX_AGE_DAYS, DEFAULT_MAX_FUTURE_S, IngestSummary, run_ingest
from pipeline.ingest.mapping import OperatorMapping, load_mapping

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_MAX_AGE_DAYS",
    "DEFAULT_MAX_FUTURE_S",
    "IngestSummary",
    "OperatorMapping",
    "load_mapping",
    "map_rows",
    "run_ingest",
]
