"""Per-record validation of canonical CDRs, defined once for batch and streaming.

:func:`validate_frame` checks a pandas DataFrame whose columns are the canonical field names
(values as they arrived: strings, numbers, booleans, datetimes) and splits it into

- ``valid``: typed exactly as :func:`features.schema.arrow_schema` (strings, ``float64``
  durations, ``bool``, ``datetime64[us, UTC]`` timestamps), columns in ``FIELD_NAMES`` order;
- ``dead``: the offending records, every field kept as text (nothing is lost), plus ``raw``
  (the whole original value where there was one, e.g. the Kafka bytes as text), ``reason_code``
  (one of :data:`REASON_CODES`) and ``reason`` (one line naming the field and the value).

Both keep the input's index, so a caller can join back metadata (a Kafka offset, a CSV line).
Batch ingest (``pipeline.ingest``) calls it directly; the streaming job applies
:func:`validate_json_values` to each micro-batch of Kafka values through ``mapInPandas``.

Every check looks at one record only, so the result does not depend on row order, and
``len(valid) + len(dead) == len(input)`` on any input: no value makes these functions raise.

A record gets the first reason that applies, in this order:

``bad_encoding``  raw bytes are not UTF-8, or a string holds a lone surrogate (unwritable);
``value_too_large``  a raw value above ``max_value_bytes`` (checked before parsing);
``bad_json``      not a JSON object (syntax error, NaN/Infinity, nesting too deep, an array);
``unknown_field`` a JSON key outside the contract (the JSON Schema forbids extra properties);
``missing_field`` a required field absent, null or blank;
``bad_type``      a value of the wrong type (a JSON number for a string field, a string for
                  ``duration_s``, a timestamp without a UTC offset, a non-finite duration), or
                  an identifier of the wrong shape (IMSI: 5-15 digits, IMEI: 8-16 digits);
``value_too_large`` a string longer than ``max_field_chars``;
``bad_enum``      ``event_type``/``release_cause``/``in_trunk_type`` outside the contract, or an
                  ``operator`` that is not a lower-case key (or not in ``rules.operators``);
``bad_e164``      ``a_number``/``b_number`` neither E.164 (``+`` and 4-15 digits) nor a bare
                  short code (2-8 digits, e.g. "113", "5656");
``negative_duration``  ``duration_s < 0``;
``value_too_large`` ``duration_s > max_duration_s``;
``time_too_old``  a timestamp before ``earliest_time`` or more than ``max_past_days`` before now;
``time_in_future`` a timestamp more than ``max_future_s`` after now;
``answer_before_start`` ``answer_time < start_time``;
``duration_inconsistent`` the outcome fields disagree. Precisely, any of:
    (1) ``release_cause == "answered"`` and ``answer_time`` is null;
    (2) ``release_cause != "answered"`` and ``answer_time`` is set;
    (3) ``release_cause != "answered"`` and ``duration_s > 0``;
    (4) a voice call ``"answered"`` with ``duration_s == 0``;
    (5) an SMS with ``duration_s != 0`` (an SMS has no conversation time).

A number's *allocation* is not checked here: an unallocated or premium CLI is evidence for the
spoofing and Wangiri detectors (``features.numbering``), so it must reach them, not the dead
letter. ``duplicate_record`` is reserved for callers that deduplicate (batch ingest does, per
file); it is not a per-record check.

>>> import datetime as dt
>>> res = validate_json_values([b"{", b"\\xff"], now=dt.datetime.now(dt.UTC))
>>> list(res.dead["reason_code"])
['bad_json', 'bad_encoding']
"""

from __future__ import annotations

from features.validation.frame import valid_to_arrow, validate_frame
from features.validation.json_values import validate_json_values
from features.validation.rules import (
    DEAD_LETTER_COLUMNS,
    REASON_CODES,
    ReasonCode,
    ValidationResult,
    ValidationRules,
)
from features.validation.text import to_text

__all__ = [
    "DEAD_LETTER_COLUMNS",
    "REASON_CODES",
    "ReasonCode",
    "ValidationResult",
    "ValidationRules",
    "to_text",
    "valid_to_arrow",
    "validate_frame",
    "validate_json_values",
]
