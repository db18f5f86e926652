"""What an analyst checks a decision against, stored with it at decision time so that a console
can show it without Spark: the feature row with its window bounds and scoring time, and for a
SIM its recent calls (counterparts, durations, cells, IMEIs); for a trunk call, the call; and
each reason with its feature value and where that value sits among the rows the model version
was validated on (its percentile, from the quantiles kept with the version)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.quantiles import FeatureQuantiles
    from models.reasons import Reason


def _plain(value: Any) -> Any:
    """A JSON-able Python value (numpy scalars unwrapped, NaN and NaT as None, times ISO)."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        ts = pd.Timestamp(value)
        return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _epoch_iso(seconds: Any) -> str | None:
    seconds = _plain(seconds)
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(float(seconds), dt.UTC).isoformat()


def _call(call: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "time": _epoch_iso(call.get("t")),
        "callee": _plain(call.get("b_number")),
        "result": _plain(call.get("release_cause")),
        "duration_s": _plain(call.get("duration_s")),
        "cell": _plain(call.get("cell_id")),
        "imei": _plain(call.get("a_imei")),
    }


def sim_evidence(rows: pd.DataFrame, feature_names: Iterable[str]) -> list[dict[str, Any]]:
    """One evidence dict per per-SIM row (columns: keys, features, ``recent_calls``)."""
    names = list(feature_names)
    out = []
    for row in rows.to_dict("records"):
        calls = row.get("recent_calls")
        calls = [] if calls is None or (isinstance(calls, float) and math.isnan(calls)) else list(calls)
        out.append(
            {
                "kind": "sim",
                "window_start": _plain(row.get("window_start")),
                "window_end": _plain(row.get("window_end")),
                "features": {name: _plain(row.get(name)) for name in names},
                # newest last, as the window holds them
                "recent_calls": [_call(c) for c in calls],
            }
        )
    return out


def call_evidence(rows: pd.DataFrame, feature_names: Iterable[str]) -> list[dict[str, Any]]:
    """One evidence dict per scored trunk call."""
    names = list(feature_names)
    keys = ("record_id", "a_number", "b_number", "operator", "in_trunk_type", "in_trunk_id", "start_time")
    return [
        {
            "kind": "call",
            "call": {k: _plain(row.get(k)) for k in keys},
            "features": {name: _plain(row.get(name)) for name in names},
        }
        for row in rows.to_dict("records")
    ]


def with_reasons(
    evidence: Mapping[str, Any] | None, reasons: Iterable[Reason], quantiles: FeatureQuantiles | None
) -> dict[str, Any]:
    """``evidence`` with ``reasons``: text, feature, value and percentile (0-100, or ``None`` when
    the version kept no quantiles or the value is missing)."""
    out = dict(evidence or {})
    out["reasons"] = [
        {
            "text": r.text,
            "feature": r.feature,
            "value": _plain(r.value),
            "percentile": None if quantiles is None else _plain(quantiles.percentile(r.feature, r.value)),
        }
        for r in reasons
    ]
    return out
