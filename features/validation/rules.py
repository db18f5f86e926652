"""What validation hands out and obeys: reason codes, the dead-letter columns, the rules."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.schema import FIELD_NAMES

ReasonCode = Literal[
    "bad_encoding",
    "bad_json",
    "unknown_field",
    "missing_field",
    "bad_type",
    "value_too_large",
    "bad_enum",
    "bad_e164",
    "negative_duration",
    "time_too_old",
    "time_in_future",
    "answer_before_start",
    "duration_inconsistent",
    # used by batch ingest only: a CSV line with the wrong number of columns, a repeated id
    "malformed_row",
    "duplicate_record",
]
REASON_CODES: tuple[str, ...] = get_args(ReasonCode)
#: columns of a dead-letter frame: every canonical field as text, then the whole raw value
DEAD_LETTER_COLUMNS: tuple[str, ...] = (*FIELD_NAMES, "raw", "reason_code", "reason")


class ValidationRules(BaseModel):
    """Limits for per-record validation (a section of the settings; frozen at run time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: records older than this are dead-lettered (live traffic: a late record is an old one)
    max_past_days: float = Field(30.0, gt=0)
    #: tolerated clock skew of the reporting switches
    max_future_s: float = Field(900.0, ge=0)
    #: absolute floor whatever ``max_past_days`` says (a 1970 time is an unset clock)
    earliest_time: dt.datetime = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    #: one day: longer calls are cut into several records by the switch
    max_duration_s: float = Field(86400.0, gt=0)
    max_field_chars: int = Field(64, ge=8)
    #: a whole raw value (one Kafka message); larger ones are not even parsed
    max_value_bytes: int = Field(65536, ge=1024)
    #: allowed ``operator`` keys; ``None`` accepts any lower-case key
    operators: frozenset[str] | None = None


@dataclass(frozen=True)
class ValidationResult:
    valid: pd.DataFrame
    dead: pd.DataFrame

    def reason_counts(self) -> dict[str, int]:
        """Dead-lettered records per reason code (codes that did not occur are left out)."""
        counts = self.dead["reason_code"].value_counts()
        return {str(k): int(v) for k, v in counts.items()}
