"""Policy: scored rows in, block / review / allow decisions out; the allowlist always wins.

Per fraud type (``spam_robocall``, ``simbox``, ``wangiri`` from the spam-SIM model,
``spoofed_call`` from the spoof-call model):

- ``score > block_above``: block for ``ttl_hours``;
- ``review_above < score <= block_above``: a flag in the analysts' review queue;
- otherwise: allow (no decision object is built for such rows; they are only counted).

``block_above: null`` (the default) means "the threshold the scoring model version was validated
at" (``ScoringModel.threshold``, chosen on validation for the target FPR and stored with the
version): the rows then carry it in a ``model_threshold`` column, and the blocks are exactly the
rows ``simguard evaluate`` counts as flagged for that version. A SIM row whose window reaches
before the stream's first record (``cold`` true) carries the version's cold threshold instead
(``ScoringModel.cold_threshold``, chosen the same way on rows computed without the day before).
A fixed ``block_above`` replaces both. A ``review_above`` at or above the effective block
threshold leaves the review band empty (every row above the block threshold blocks, the rest is
allowed).

A per-SIM row is the SIM as of its ``window_end`` (its scoring time): the stream's rows and the
training rows are the same kind at any micro-batch size, so one threshold serves both.

The allowlist is consulted before any threshold and always wins (FCC safe harbour: emergency
calls are never blocked; DOMAIN.md "Redress and blocklist practice"): emergency numbers and short
codes from the numbering plan, registered business numbers (call centres, telemarketers, taxi
dispatch: the legitimate look-alikes of DOMAIN.md), and numbers an analyst cleared. An allowlisted
row that scored at review level or above becomes an ``allow`` decision whose ``why`` names the
allowlist, so the suppression is counted and kept as evidence, never acted on.

Scopes: a per-SIM decision applies to the number everywhere (scope ``all``: the home operator bars
outgoing calls, the other operators bar incoming calls from it, DOMAIN.md). A spoofed call never
blocks its CLI, which belongs to a victim: it yields a trunk-scoped rule, scope
``trunk:<in_trunk_type>``, meaning "reject calls presenting this CLI that arrive on this kind of
trunk" (the owner's own roaming calls excepted, as in Ofcom's 2025 rule), and the store counts it
against the ingress trunk.

>>> import pandas as pd
>>> rows = pd.DataFrame({"number": ["+84961000001", "113"], "operator": "viettel",
...     "fraud_type": "spam_robocall", "score": [0.99, 0.99], "reasons": [["many calls"]] * 2,
...     "model_name": "simguard-spam-sim", "model_version": "3", "model_threshold": 0.93,
...     "window_end": pd.Timestamp("2026-11-02", tz="UTC")})
>>> [(d.action, d.number, d.why) for d in decide_sims(rows, policy=PolicySettings(),
...     allowlist=StaticAllowlist(), batch_key="q:1")]  # doctest: +NORMALIZE_WHITESPACE
[('block', '+84961000001', 'score 0.9900 > model threshold 0.93 (simguard-spam-sim v3)'),
 ('allow', '113', 'allowlisted: emergency number')]
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from streaming.blocklist.decision import (  # re-exported: callers keep ``from streaming.policy import X``
    FRAUD_TYPES,
    MAX_KEY_LEN,
    MAX_NUMBER_LEN,
    SCOPE_ALL,
    SIM_FRAUD_TYPES,
    SPOOFED_CALL,
    TRUNK_SCOPE_PREFIX,
    Action,
    Allowlist,
    Decision,
    FraudTypePolicy,
    PolicySettings,
    StaticAllowlist,
    allowlist_reason,
    idempotency_key,
    trunk_scope,
)
from streaming.blocklist.errors import BlocklistError

if TYPE_CHECKING:
    # pandas, numpy and the numbering plan load only when rows are decided: ``pipeline.config``
    # imports this module for :class:`PolicySettings` on every CLI start
    import numpy as np
    import pandas as pd


@cache
def _e164() -> re.Pattern[str]:
    from features.numbering import E164_PATTERN

    return re.compile(E164_PATTERN)


SIM_COLUMNS = ("number", "operator", "fraud_type", "score", "reasons", "model_name", "model_version", "window_end")
CALL_COLUMNS = ("cli", "in_trunk_type", "in_trunk_id", "operator", "score", "reasons", "model_version", "start_time")
#: the scoring model version's validated threshold for the row, needed where ``block_above`` is null
MODEL_THRESHOLD = "model_threshold"
#: optional: true where the row's window reaches before the stream's first record (its
#: ``model_threshold`` is then the version's cold threshold)
COLD = "cold"


# -- scored rows -> decisions ----------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BlocklistError(f"scored {what} rows lack column(s) {', '.join(missing)}")


def _reasons(value: Any) -> tuple[str, ...]:
    """Reasons arrive as a list, a numpy array (Arrow), a single string or nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Mapping):
        return (str(value.get("text", value)),)
    out = []
    for item in value:
        if isinstance(item, Mapping):
            item = item.get("text", item)
        out.append(str(item))
    return tuple(out)


def _utc(value: Any) -> dt.datetime:
    import pandas as pd

    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise BlocklistError("a scored row has no window_end / start_time")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _review_thresholds(fraud_types: pd.Series, policy: PolicySettings) -> np.ndarray:
    unknown = sorted(set(fraud_types.dropna().unique()) - set(FRAUD_TYPES))
    if unknown or fraud_types.isna().any():
        raise BlocklistError(
            f"no policy for fraud type(s) {unknown or ['<missing>']}: the policy knows {', '.join(FRAUD_TYPES)}"
        )
    return fraud_types.map({t: policy.for_type(t).review_above for t in FRAUD_TYPES}).to_numpy(dtype=float)


def block_thresholds(scored: pd.DataFrame, *, policy: PolicySettings) -> np.ndarray:
    """Per scored row (with ``fraud_type``): the score above which it blocks."""
    return _block_thresholds(scored, scored["fraud_type"], policy)


def _block_thresholds(scored: pd.DataFrame, fraud_types: pd.Series, policy: PolicySettings) -> np.ndarray:
    """Per row: the fraud type's ``block_above``, or where that is null the row's
    ``model_threshold`` (the scoring version's validated threshold)."""
    import numpy as np
    import pandas as pd

    fixed = fraud_types.map({t: policy.for_type(t).block_above for t in FRAUD_TYPES})
    fixed = pd.to_numeric(fixed, errors="coerce").to_numpy(dtype=float)
    need = np.isnan(fixed)
    if not need.any():
        return fixed
    if MODEL_THRESHOLD not in scored.columns:
        types = sorted(set(fraud_types[need]))
        raise BlocklistError(
            f"block_above is null (the model's validated threshold) for {', '.join(types)}, but the scored rows "
            f"carry no {MODEL_THRESHOLD} column"
        )
    model = pd.to_numeric(scored[MODEL_THRESHOLD], errors="coerce").to_numpy(dtype=float)
    if np.isnan(model[need]).any():
        raise BlocklistError(f"a scored row has no {MODEL_THRESHOLD} where its fraud type's block_above is null")
    return np.where(need, model, fixed)


def _decide_row(
    *,
    number: str,
    score: float,
    block_above: float,
    rule: FraudTypePolicy,
    model: str,
    allowlist: Allowlist,
    cold: bool = False,
) -> tuple[Action, str]:
    why_allowed = allowlist.why_allowed(number)
    if why_allowed is not None:
        return "allow", why_allowed
    if score > block_above:
        if rule.block_above is None and cold:
            return "block", (f"score {score:.4f} > cold threshold {block_above:.6g} ({model}; the window reaches "
                             "before the stream's first record)")
        if rule.block_above is None:
            return "block", f"score {score:.4f} > model threshold {block_above:.6g} ({model})"
        return "block", f"score {score:.4f} > block_above {block_above:g}"
    return "review", f"score {score:.4f} > review_above {rule.review_above:g}"


def _evidence(row: Any) -> Mapping[str, Any] | None:
    value = row.get("evidence")
    return value if isinstance(value, Mapping) else None


def _model_text(name: str | None, version: str | None) -> str:
    return f"{name or 'model'} v{version or '?'}"


@dataclass(frozen=True)
class _Subject:
    """What one scored row would act on: the number, its scope, when, and the row's identity."""

    number: str
    scope: str
    observed_at: dt.datetime
    #: the idempotency key without the batch key
    key: str
    model_name: str | None
    trunk_type: str | None = None
    trunk_id: str | None = None


def _decide(
    scored: pd.DataFrame,
    *,
    fraud_types: pd.Series,
    eligible: np.ndarray | None,
    subject: Callable[[pd.Series], _Subject | None],
    check: Callable[[str], None],
    e164_only: bool,
    policy: PolicySettings,
    allowlist: Allowlist,
    batch_key: str,
) -> list[Decision]:
    """The one path from scored rows to decisions that :func:`decide_sims` and
    :func:`decide_calls` share; they say which rows are eligible and what each row names."""
    import numpy as np
    import pandas as pd

    score = pd.to_numeric(scored["score"], errors="coerce").to_numpy(dtype=float)
    review = _review_thresholds(fraud_types, policy)
    block = _block_thresholds(scored, fraud_types, policy)
    # NaN compares False: a row without a score never blocks
    above = score > np.minimum(review, block)
    candidates = np.flatnonzero(above if eligible is None else above & eligible)
    out: list[Decision] = []
    for i in candidates:
        row = scored.iloc[int(i)]
        target = subject(row)
        if target is None:
            continue
        ftype = str(fraud_types.iloc[int(i)])
        check(ftype)
        s = float(score[i])
        rule = policy.for_type(ftype)
        action, why = _decide_row(
            number=target.number,
            score=s,
            block_above=float(block[i]),
            rule=rule,
            model=_model_text(target.model_name, _text(row["model_version"])),
            cold=not _missing(row.get(COLD)) and bool(row.get(COLD)),
            allowlist=allowlist,
        )
        if e164_only and action != "allow" and not _e164().fullmatch(target.number):
            # a SIM-wide rule on a malformed number would match nothing on the operators' side
            action, why = "allow", f"not an E.164 number ({why})"
        out.append(
            Decision(
                action=action,
                number=target.number,
                scope=target.scope,
                fraud_type=ftype,
                score=s,
                reasons=_reasons(row["reasons"]),
                model_name=target.model_name,
                model_version=_text(row["model_version"]),
                reported_by=_text(row["operator"]),
                observed_at=target.observed_at,
                idempotency_key=idempotency_key(f"{batch_key}:{target.key}"),
                ttl_hours=rule.ttl_hours,
                why=why,
                trunk_type=target.trunk_type,
                trunk_id=target.trunk_id,
                evidence=_evidence(row),
            )
        )
    return out


def decide_sims(
    scored: pd.DataFrame,
    *,
    policy: PolicySettings,
    allowlist: Allowlist,
    batch_key: str,
) -> list[Decision]:
    """Decisions for per-SIM rows (columns :data:`SIM_COLUMNS`), in row order.

    Only rows above their fraud type's ``review_above`` (or its block threshold, if lower) give
    a decision: ``block``, ``review``, or ``allow`` when an allowlist wins. ``batch_key`` (e.g.
    ``f"{query_id}:{batch_id}"``) makes the idempotency keys ``{batch_key}:{scope}|{number}@{window_end}``,
    or ``...@{window_start}/{window_end}`` when the rows have a ``window_start`` (each scoring time of
    a SIM is its own detection). Where ``block_above`` is null the rows need a ``model_threshold``
    column.
    """
    _require(scored, SIM_COLUMNS, "SIM")
    if scored.empty:
        return []
    has_start = "window_start" in scored.columns

    def sim(row: pd.Series) -> _Subject | None:
        number = _text(row["number"])
        if not number or len(number) > MAX_NUMBER_LEN:
            # longer than any number: no operator could match a rule on it (nor store it)
            return None
        observed = _utc(row["window_end"])
        window = observed.isoformat()
        if has_start and not _missing(row["window_start"]):
            window = f"{_utc(row['window_start']).isoformat()}/{window}"
        return _Subject(number, SCOPE_ALL, observed, f"{SCOPE_ALL}|{number}@{window}", _text(row["model_name"]))

    def not_a_call(fraud_type: str) -> None:
        if fraud_type == SPOOFED_CALL:
            raise BlocklistError("a per-SIM row has fraud type spoofed_call: spoofed calls go through decide_calls")

    return _decide(
        scored,
        fraud_types=scored["fraud_type"],
        eligible=None,
        subject=sim,
        check=not_a_call,
        e164_only=True,
        policy=policy,
        allowlist=allowlist,
        batch_key=batch_key,
    )


def decide_calls(
    scored: pd.DataFrame,
    *,
    policy: PolicySettings,
    allowlist: Allowlist,
    batch_key: str,
    model_name: str | None = None,
) -> list[Decision]:
    """Decisions for scored trunk calls (columns :data:`CALL_COLUMNS`; ``record_id`` and
    ``model_name`` are used when present). Every decision is trunk-scoped: the presented CLI is
    the victim's number and is never blocked outright.

    Idempotency keys are per call, ``{batch_key}:{scope}|{cli}@{operator}/{trunk_id}/{record_id
    or start_time}``, so every spoofed call counts once against its ingress trunk. Where
    ``block_above`` is null the rows need a ``model_threshold`` column.
    """
    import pandas as pd

    _require(scored, CALL_COLUMNS, "call")
    if scored.empty:
        return []
    has_record = "record_id" in scored.columns
    has_model = "model_name" in scored.columns

    def call(row: pd.Series) -> _Subject | None:
        cli = _text(row["cli"])
        trunk_type = _text(row["in_trunk_type"])
        if not cli or not trunk_type or len(cli) > MAX_NUMBER_LEN:
            # a garbage CLI longer than any number: the operators' invalid-CLI rule rejects it,
            # a rule naming it would match nothing else
            return None
        scope = trunk_scope(trunk_type)
        observed = _utc(row["start_time"])
        trunk_id = _text(row["in_trunk_id"]) or ""
        call_ref = (_text(row["record_id"]) if has_record else None) or observed.isoformat()
        name = (_text(row["model_name"]) if has_model else None) or model_name
        key = f"{scope}|{cli}@{_text(row['operator'])}/{trunk_id}/{call_ref}"
        return _Subject(cli, scope, observed, key, name, trunk_type=trunk_type, trunk_id=trunk_id)

    return _decide(
        scored,
        fraud_types=pd.Series(SPOOFED_CALL, index=scored.index),
        # subscriber ingress is authenticated by the SIM: it is never a spoofing candidate
        eligible=(scored["in_trunk_type"].astype(str) != "subscriber").to_numpy(),
        subject=call,
        check=lambda _fraud_type: None,
        e164_only=False,
        policy=policy,
        allowlist=allowlist,
        batch_key=batch_key,
    )


def count_actions(decisions: Iterable[Decision]) -> dict[tuple[str, str], int]:
    """(fraud_type, action) -> how many decisions; for metrics and logs."""
    return dict(Counter((d.fraud_type, d.action) for d in decisions))


__all__ = [
    "CALL_COLUMNS",
    "COLD",
    "FRAUD_TYPES",
    "MAX_KEY_LEN",
    "MAX_NUMBER_LEN",
    "MODEL_THRESHOLD",
    "SCOPE_ALL",
    "SIM_COLUMNS",
    "SIM_FRAUD_TYPES",
    "SPOOFED_CALL",
    "TRUNK_SCOPE_PREFIX",
    "Action",
    "Allowlist",
    "Decision",
    "FraudTypePolicy",
    "PolicySettings",
    "StaticAllowlist",
    "allowlist_reason",
    "count_actions",
    "decide_calls",
    "decide_sims",
    "idempotency_key",
    "trunk_scope",
]
