"""Reason codes: the features that pushed a score up, as plain sentences with their values.

Contributions come from LightGBM's own SHAP values (``booster.predict(..., pred_contrib=True)``);
for the multiclass spam-SIM model the block of the predicted fraud class is used. Each feature
name has one sentence template (:func:`sentence_templates`, generated from the same
``FeatureSettings`` as the names themselves), e.g. "called 212 distinct numbers in 24h",
"95% of answered calls under 10 s", "presents a domestic mobile number but arrived on an
international gateway while the owner is not roaming".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from features.calls import CLI_KIND_CODES
from features.settings import FeatureSettings, duration_label
from features.sim import sim_feature_names
from models.matrix import feature_matrix

if TYPE_CHECKING:
    import lightgbm as lgb

Template = Callable[[float, Mapping[str, float]], str]
KIND_BY_CODE = {code: kind.replace("_", " ") for kind, code in CLI_KIND_CODES.items()}


class Explained(Protocol):
    """What :func:`explain` needs of a model (``models.scoring.ScoringModel`` has it); a protocol,
    so that this module does not import the scorer that imports it."""

    booster: lgb.Booster

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def binary(self) -> bool: ...

    def proba(self, frame: pd.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float
    contribution: float
    text: str


def _missing(v: float) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _count(text: str, *, none: str | None = None) -> Template:
    """``text`` with ``{n}`` the value as an integer."""

    def render(v: float, row: Mapping[str, float]) -> str:
        if _missing(v):
            return none or text.format(n="an unknown number of")
        return text.format(n=f"{v:.0f}")

    return render


def _share(text: str, *, none: str) -> Template:
    """``text`` with ``{p}`` the value as a percentage."""

    def render(v: float, row: Mapping[str, float]) -> str:
        return none if _missing(v) else text.format(p=_pct(v))

    return render


def _seconds(text: str, *, none: str = "had no answered calls") -> Template:
    def render(v: float, row: Mapping[str, float]) -> str:
        return none if _missing(v) else text.format(s=f"{v:.0f}")

    return render


def _flag(yes: str, no: str) -> Template:
    def render(v: float, row: Mapping[str, float]) -> str:
        return yes if not _missing(v) and v >= 0.5 else no

    return render


def sentence_templates(settings: FeatureSettings) -> dict[str, Template]:
    """A sentence template for every per-SIM and per-call feature name (the per-window ones for
    the long and the short window)."""
    out = _templates(settings, settings.window)
    short = _templates(settings, settings.short_window)
    out.update({name: short[name] for name in sim_feature_names(settings) if name not in out})
    return out


def _templates(settings: FeatureSettings, w: str) -> dict[str, Template]:
    b = settings.burst
    c = duration_label(settings.cohort_bucket_s)
    cc = duration_label(settings.concurrency_window_s)
    o = duration_label(settings.owner_lookback_s)
    t = duration_label(settings.trunk_bucket_s)
    short = f"{settings.short_call_s:g}"
    night = f"{settings.night_start_hour:02d}:00-{settings.night_end_hour:02d}:00 local time"

    def gap_cv(v: float, row: Mapping[str, float]) -> str:
        if _missing(v):
            return "made too few calls to time the gaps between them"
        regular = "machine-like, evenly spaced" if v < 0.5 else "irregular"
        return f"gaps between calls vary by {v:.2f} of their mean ({regular} dialling)"

    def ratio(v: float, row: Mapping[str, float]) -> str:
        if _missing(v):
            return "made no outgoing calls"
        return f"{_pct(v)} of its calls in {w} went to a different number"

    def per_callee(v: float, row: Mapping[str, float]) -> str:
        return "called nobody" if _missing(v) else f"called each number {v:.1f} times on average in {w}"

    def in_out(v: float, row: Mapping[str, float]) -> str:
        if _missing(v):
            return f"has no incoming or outgoing calls to compare in {w}"
        return f"received {v:.2f} calls per outgoing call in {w}"

    def kind(v: float, row: Mapping[str, float]) -> str:
        if _missing(v):
            return "presents a number the numbering plan cannot classify"
        return f"presents a {KIND_BY_CODE.get(int(v), 'unknown')} number"

    def domestic_on_intl(v: float, row: Mapping[str, float]) -> str:
        if _missing(v) or v < 0.5:
            return "did not present a domestic number on an international gateway"
        code = row.get("cli_kind_code")
        what = KIND_BY_CODE.get(int(code), "domestic") if not _missing(code) else "domestic"
        what = what if what.startswith(("domestic", "unallocated")) else f"domestic {what}"
        roaming = row.get("cli_owner_roaming")
        owner = (
            "while the owner is roaming abroad"
            if not _missing(roaming) and roaming >= 0.5
            else "while the owner is not roaming"
        )
        return f"presents a {what} number but arrived on an international gateway {owner}"

    return {
        f"calls_out_{w}": _count(f"made {{n}} outgoing calls in {w}"),
        f"calls_out_peak_{b}_{w}": _count(f"made {{n}} calls in its busiest {b} of {w}"),
        f"answered_share_{w}": _share(f"only {{p}} of its calls in {w} were answered", none="made no calls"),
        f"distinct_callees_{w}": _count(f"called {{n}} distinct numbers in {w}"),
        f"distinct_callee_ratio_{w}": ratio,
        f"calls_per_callee_{w}": per_callee,
        f"short_call_share_{w}": _share(
            f"{{p}} of answered calls under {short} s", none="had no answered calls"
        ),
        f"duration_mean_{w}": _seconds("answered calls lasted {s} s on average"),
        f"duration_median_{w}": _seconds("the median answered call lasted {s} s"),
        f"duration_max_{w}": _seconds("the longest answered call lasted {s} s"),
        f"calls_in_{w}": _count(f"received {{n}} calls in {w}"),
        f"in_out_ratio_{w}": in_out,
        f"callback_share_{w}": _share(
            f"{{p}} of the numbers it called have called it back in {w}", none="called nobody"
        ),
        f"sms_out_{w}": _count(f"sent {{n}} SMS in {w}"),
        f"distinct_cells_{w}": _count(f"used {{n}} distinct cells in {w}"),
        f"distinct_imeis_{w}": _count(f"used {{n}} distinct handsets (IMEIs) in {w}"),
        f"imei_shared_sims_{w}": _count(f"its handset (IMEI) carried {{n}} SIMs in {w}"),
        f"cell_cohort_peak_{c}_{w}": _count(f"shared a cell with up to {{n}} active SIMs in the same {c}"),
        f"night_share_{w}": _share(f"{{p}} of its calls at night ({night})", none="made no calls"),
        f"active_hours_{w}": _count(f"called in {{n}} different {b} periods of {w}"),
        f"gap_cv_{w}": gap_cv,
        f"sequential_share_{w}": _share(
            "{p} of consecutive calls went to sequential numbers", none="made too few calls to compare"
        ),
        f"intl_share_{w}": _share("{p} of its calls went abroad", none="made no calls"),
        f"premium_share_{w}": _share("{p} of its calls went to premium-rate numbers", none="made no calls"),
        f"onnet_share_{w}": _share("{p} of its calls went to its own operator's numbers", none="made no calls"),
        f"gateway_share_{w}": _share(
            "{p} of its calls arrived through an international gateway", none="made no calls"
        ),
        f"cancelled_share_{w}": _share(
            "{p} of its calls were cancelled before answer (one ring)", none="made no calls"
        ),
        f"hours_seen_{w}": _count(f"its activity in the last {w} spans {{n}} h"),
        "cli_international_premium": _flag(
            "calls from an international premium-rate number", "does not call from a premium-rate range"
        ),
        "cli_domestic_mobile": _flag("is a domestic mobile number", "is not a domestic mobile number"),
        "cli_kind_code": kind,
        "cli_invalid_or_unallocated": _flag(
            "presents an invalid or unallocated number", "presents a valid, allocated number"
        ),
        "cli_do_not_originate": _flag(
            "presents a Do-Not-Originate number (a hotline that never calls out)",
            "presents a number that may originate calls",
        ),
        "cli_domestic": _flag("presents a domestic number", "presents a foreign number"),
        "ingress_international": _flag(
            "arrived on an international gateway", "did not arrive on an international gateway"
        ),
        "ingress_interconnect": _flag(
            "arrived on a domestic interconnect", "did not arrive on a domestic interconnect"
        ),
        "domestic_cli_on_international": domestic_on_intl,
        "cli_home_operator_is_reporter": _flag(
            "presents a number of this operator's own subscribers, yet came in on a trunk",
            "presents a number of another operator or abroad",
        ),
        "cli_owner_roaming": _flag("the number's owner is roaming abroad", "the number's owner is not roaming"),
        f"same_cli_calls_{cc}": _count(f"{{n}} other calls presented the same number within {cc}"),
        f"same_cli_operators_{cc}": _count(f"the same number appeared at {{n}} operators within {cc}"),
        f"same_cli_subscriber_calls_{cc}": _count(
            f"the number's owner made {{n}} calls from their own SIM within the same {cc}"
        ),
        f"owner_home_records_{o}": _count(
            f"the number's owner used their own SIM at home {{n}} times in the previous {o}"
        ),
        f"owner_roaming_records_{o}": _count(
            f"the number's owner used their own SIM abroad {{n}} times in the previous {o}"
        ),
        "owner_last_seen_roaming": _flag(
            "the number's owner was last seen abroad", "the number's owner was last seen at home (or not at all)"
        ),
        "callee_known_to_owner": _flag(
            "the number's owner had called this callee from their own SIM",
            "the number's owner had not called this callee from their own SIM",
        ),
        f"trunk_calls_{t}": _count(f"{{n}} other calls arrived on the same trunk group within the {t}"),
        f"trunk_domestic_not_roaming_{t}": _count(
            f"{{n}} other calls on the same trunk group within the {t} presented domestic numbers "
            "whose owners were not roaming"
        ),
        f"trunk_bad_cli_share_{t}": _share(
            f"{{p}} of the other calls on the same trunk group within the {t} presented invalid, unallocated "
            "or Do-Not-Originate numbers",
            none=f"no other calls arrived on the same trunk group within the {t}",
        ),
        "answered": _flag("was answered", "was not answered"),
        "duration_s": _seconds("lasted {s} s", none="lasted 0 s"),
    }


def explain(
    model: Explained, frame: pd.DataFrame, *, top_k: int, feature_settings: FeatureSettings
) -> list[list[Reason]]:
    """Top ``top_k`` positive contributions per row towards the row's fraud score."""
    if frame.empty:
        return []
    x = feature_matrix(frame, model.feature_names)
    contrib = np.asarray(model.booster.predict(x, pred_contrib=True), dtype=np.float64)
    n_feat = len(model.feature_names)
    if model.binary:
        block = contrib[:, :n_feat]
    else:
        k = len(model.classes)
        per_class = contrib.reshape(len(frame), k, n_feat + 1)
        fraud_class = 1 + model.proba(frame)[:, 1:].argmax(axis=1)
        block = per_class[np.arange(len(frame)), fraud_class, :n_feat]
    templates = sentence_templates(feature_settings)
    # a rule that flags the row by itself (models.scoring) is its first reason, whatever its share
    certain = [model.feature_names.index(f) for f in getattr(getattr(model, "card", None), "certain_features", ())]
    out: list[list[Reason]] = []
    for i in range(len(frame)):
        row = dict(zip(model.feature_names, x[i].tolist(), strict=True))
        first = [j for j in certain if x[i, j] >= 0.5]
        rest = [j for j in np.argsort(-block[i], kind="stable") if j not in first and block[i, j] > 0]
        out.append(
            [
                Reason(
                    feature=model.feature_names[j],
                    value=float(x[i, j]),
                    contribution=float(block[i, j]),
                    text=templates[model.feature_names[j]](float(x[i, j]), row),
                )
                for j in [*first, *rest][:top_k]
            ]
        )
    return out


def reason_text(reasons: list[Reason]) -> str:
    """One line for a report or a blocklist entry."""
    return "; ".join(r.text for r in reasons)
