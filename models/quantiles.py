"""Where a feature value sits in the population the model was validated on, without the rows.

A model version keeps, per feature, 101 quantiles (0 %, 1 %, ... 100 %) of the validation rows
(every point the stream would score on those days); the stream looks a decision's values up in
them, so the console can say "made 212 outgoing calls in 24h (p99)" without Spark.

>>> q = FeatureQuantiles.from_frame(pd.DataFrame({"calls": range(1, 101)}), ["calls"])
>>> q.percentile("calls", 50.5), q.percentile("calls", 500), q.percentile("calls", None)
(50.0, 100.0, None)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

LEVELS = 101


@dataclass(frozen=True)
class FeatureQuantiles:
    #: feature name -> ``LEVELS`` ascending quantile values (empty: the feature was always missing)
    values: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    #: rows the quantiles were computed from
    rows: int = 0

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, names: Iterable[str]) -> FeatureQuantiles:
        levels = np.linspace(0.0, 1.0, LEVELS)
        out: dict[str, tuple[float, ...]] = {}
        for name in names:
            col = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
            col = col[np.isfinite(col)]
            # 7 significant digits: exact for counts, small in JSON
            out[name] = tuple(float(f"{v:.7g}") for v in np.quantile(col, levels)) if len(col) else ()
        return cls(out, len(frame))

    def percentile(self, name: str, value: Any) -> float | None:
        """The share (0-100) of the population at or below ``value``; ``None`` when unknown."""
        q = self.values.get(name)
        if not q or value is None:
            return None
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        if math.isnan(v):
            return None
        arr = np.asarray(q)
        left = int(np.searchsorted(arr, v, side="left"))
        right = int(np.searchsorted(arr, v, side="right"))
        step = 100.0 / (len(arr) - 1)
        if right > left:  # equal to some quantiles: the highest level at or below it
            return (right - 1) * step
        if left == 0:
            return 0.0
        if left == len(arr):
            return 100.0
        lo, hi = arr[left - 1], arr[left]
        return ((left - 1) + (v - lo) / (hi - lo)) * step

    def to_json(self) -> str:
        return json.dumps(
            {"levels": LEVELS, "rows": self.rows, "values": {k: list(v) for k, v in self.values.items()}},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureQuantiles:
        raw = json.loads(text)
        return cls({k: tuple(v) for k, v in raw["values"].items()}, int(raw.get("rows", 0)))
