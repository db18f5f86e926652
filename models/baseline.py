"""The threshold rules operators use today: the baseline every model version must beat.

Spam SIMs (per window, DOMAIN.md signatures; the Vietnamese authority's criteria are call
frequency, share of short calls and calls to unrelated numbers):

- robocaller: ``calls_out_peak_1h > N`` and ``distinct_callee_ratio > X`` and
  ``duration_mean < Y s``;
- SIM box: ``calls_in == 0`` and ``sms_out == 0`` and ``calls_out > M``;
- Wangiri: an international premium-rate CLI with ``cancelled_share > Z`` and ``calls_out > W``.

The ratios (X, Y, Z) are fixed at the operators' usual values; the volume thresholds (N, M, W)
are scaled by one knob, the rule score threshold: a window scores ``max(volume / base)`` over
the rules whose fixed conditions hold and is flagged above the knob. The knob is tuned on
validation for the same target FPR as the model (``threshold_at_fpr``), so a comparison at equal
FPR is fair.

Spoofed calls: a domestic CLI on an international trunk while its owner is not roaming
(Ofcom 2025, with the roamer exception), an invalid or unallocated CLI (Ofcom 2023), or a
Do-Not-Originate CLI. The rule has no knob: it is reported at whatever FPR it reaches, and the
model is compared at that same FPR. The last two are facts of the numbering plan, not inferences:
no legitimate call presents a number that is not allocated or that never originates calls
(:data:`SPOOF_CERTAIN_FEATURES`), so the spoof-call model flags them outright
(``models.scoring``). The first has known exceptions (a roamer whose HLR answer is stale) and is
left to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.settings import FeatureSettings
from models.scoring import FLAGGED, FRAUD_TYPE, SCORE
from models.settings import SpamRuleSettings


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class SpamRules:
    """The spam-SIM rules as a scorer; ``threshold`` is the tuned knob (1.0 = nominal rules)."""

    rules: SpamRuleSettings
    features: FeatureSettings
    threshold: float = 1.0
    tunable: bool = True
    name: str = "rules"

    def with_threshold(self, threshold: float) -> SpamRules:
        return replace(self, threshold=float(threshold))

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        r, w, b = self.rules, self.features.window, self.features.burst
        # NaN compares False: a window without answered calls has no mean duration, so the
        # robocaller rule (which needs short calls) does not fire on it, as in operators' SQL
        peak = _col(frame, f"calls_out_peak_{b}_{w}")
        calls_out = _col(frame, f"calls_out_{w}")
        spam_ok = (_col(frame, f"distinct_callee_ratio_{w}") > r.spam_distinct_callee_ratio) & (
            _col(frame, f"duration_mean_{w}") < r.spam_duration_mean_s
        )
        simbox_ok = (_col(frame, f"calls_in_{w}") == 0) & (_col(frame, f"sms_out_{w}") == 0)
        wangiri_ok = (_col(frame, "cli_international_premium") == 1) & (
            _col(frame, f"cancelled_share_{w}") > r.wangiri_cancelled_share
        )
        scores = np.column_stack(
            [
                np.where(spam_ok, peak / r.spam_peak_1h, 0.0),
                np.where(simbox_ok, calls_out / r.simbox_calls_out, 0.0),
                np.where(wangiri_ok, calls_out / r.wangiri_calls_out, 0.0),
            ]
        )
        scores = np.nan_to_num(scores, nan=0.0)
        best = scores.max(axis=1)
        kind = np.asarray(["spam_robocall", "simbox", "wangiri"], dtype=object)[scores.argmax(axis=1)]
        return pd.DataFrame({SCORE: best, FRAUD_TYPE: kind, FLAGGED: best > self.threshold}, index=frame.index)


#: the spoofing rules that hold by definition: an invalid or unallocated CLI, a Do-Not-Originate CLI
SPOOF_CERTAIN_FEATURES: tuple[str, ...] = ("cli_invalid_or_unallocated", "cli_do_not_originate")


@dataclass(frozen=True)
class SpoofRules:
    """The spoofed-call rules; no knob, so the threshold stays at 0.5 on a 0/1 score."""

    features: FeatureSettings
    threshold: float = 0.5
    tunable: bool = False
    name: str = "rules"

    def with_threshold(self, threshold: float) -> SpoofRules:
        return self

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        from_abroad = (_col(frame, "domestic_cli_on_international") == 1) & (_col(frame, "cli_owner_roaming") != 1)
        hit = from_abroad
        for name in SPOOF_CERTAIN_FEATURES:
            hit = hit | (_col(frame, name) == 1)
        score = hit.astype(np.float64)
        return pd.DataFrame(
            {SCORE: score, FRAUD_TYPE: np.full(len(frame), "spoofed", dtype=object), FLAGGED: score > self.threshold},
            index=frame.index,
        )


def rule_feature_names(features: FeatureSettings) -> list[str]:
    """The feature columns the rules read (all of them model features too)."""
    w, b = features.window, features.burst
    return [
        f"calls_out_peak_{b}_{w}",
        f"calls_out_{w}",
        f"distinct_callee_ratio_{w}",
        f"duration_mean_{w}",
        f"calls_in_{w}",
        f"sms_out_{w}",
        "cli_international_premium",
        f"cancelled_share_{w}",
    ]
