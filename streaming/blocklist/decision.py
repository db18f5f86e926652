"""The decision vocabulary the policy and the blocklist store share: fraud types, scopes,
idempotency keys, the policy settings, :class:`Decision` and the allowlist.

It sits below both :mod:`streaming.policy` (which turns scored rows into decisions) and
:mod:`streaming.blocklist.store` (which applies them), so the store, and anything built on it,
never imports the stream job's modules. Only the standard library, pydantic and this package's
errors are imported at module level: ``pipeline.config`` reads :class:`PolicySettings` on every
CLI start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from streaming.blocklist.errors import BlocklistError

if TYPE_CHECKING:
    from features.numbering import NumberingPlan

Action = Literal["block", "review", "allow"]

#: fraud types of the spam-SIM model (``models.dataset.SIM_CLASSES`` minus ``normal``)
SIM_FRAUD_TYPES: tuple[str, ...] = ("spam_robocall", "simbox", "wangiri")
SPOOFED_CALL = "spoofed_call"
FRAUD_TYPES: tuple[str, ...] = (*SIM_FRAUD_TYPES, SPOOFED_CALL)

#: a per-SIM decision applies to the number on every operator
SCOPE_ALL = "all"
TRUNK_SCOPE_PREFIX = "trunk:"


#: the store's key column holds 255 characters, its number columns 32 (E.164 needs 16)
MAX_KEY_LEN = 255
MAX_NUMBER_LEN = 32


def idempotency_key(text: str) -> str:
    """``text`` itself when it fits the store's column, else a prefix plus its SHA-256 (still
    deterministic, still readable enough to find the batch)."""
    if len(text) <= MAX_KEY_LEN:
        return text
    import hashlib

    return f"{text[:150]}#{hashlib.sha256(text.encode()).hexdigest()}"


def trunk_scope(trunk_type: str) -> str:
    """``trunk:international_gateway``: calls presenting the CLI on this kind of ingress trunk."""
    return f"{TRUNK_SCOPE_PREFIX}{trunk_type}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FraudTypePolicy(_Section):
    """Thresholds on the model score (0..1) and how long a block lasts."""

    #: ``None``: the threshold the scoring model version was validated at (its operating point
    #: for the target FPR, the one ``simguard evaluate`` reports; its cold threshold for SIM rows
    #: whose window reaches before the stream's first record); a number replaces both
    block_above: float | None = Field(default=None, ge=0, le=1)
    review_above: float = Field(ge=0, le=1)
    #: a block lapses after this long unless the number is flagged again after it lapsed; the TTL
    #: bounds the harm of a wrong block nobody appealed (FCC: redress in reasonable time)
    ttl_hours: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> FraudTypePolicy:
        if self.block_above is not None and self.review_above > self.block_above:
            raise ValueError("review_above must not be above block_above")
        return self

    def lowest(self, model_threshold: float | None) -> float:
        """Scores at or below this give no decision (the lower of review and block thresholds);
        without the model's threshold where ``block_above`` is null, ``review_above``."""
        block = self.block_above if self.block_above is not None else model_threshold
        return self.review_above if block is None else min(self.review_above, block)


class PolicySettings(_Section):
    """One policy per fraud type; ``pipeline.config.Settings`` composes it as ``policy:``.

    Defaults: robocall SIMs are blocked for 30 days (spammers rotate to fresh SIMs, and a
    reclaimed number is reassigned); SIM boxes need a higher score to block outright because
    evasive boxes imitate people and vendors advise flag, investigate, then act (DOMAIN.md), and
    their SIMs are usually reclaimed, so 90 days; Wangiri CLIs are foreign premium-rate numbers
    with little collateral but campaigns rotate CLIs within days, so 7 days; a spoofed CLI belongs
    to a victim, so its trunk rule lasts one day and is renewed only while spoofing goes on.
    Blocks happen above the champion version's validated threshold (``block_above: null``; its
    cold threshold for rows a stream scores before it holds a day of records), so the blocklist
    runs at the operating point the model was chosen and evaluated at.
    """

    spam_robocall: FraudTypePolicy = FraudTypePolicy(review_above=0.7, ttl_hours=720)
    simbox: FraudTypePolicy = FraudTypePolicy(review_above=0.6, ttl_hours=2160)
    wangiri: FraudTypePolicy = FraudTypePolicy(review_above=0.6, ttl_hours=168)
    spoofed_call: FraudTypePolicy = FraudTypePolicy(review_above=0.6, ttl_hours=24)

    def for_type(self, fraud_type: str) -> FraudTypePolicy:
        if fraud_type not in FRAUD_TYPES:
            raise BlocklistError(f"no policy for fraud type {fraud_type!r}: the policy knows {', '.join(FRAUD_TYPES)}")
        return getattr(self, fraud_type)


@dataclass(frozen=True)
class Decision:
    """What the policy decided for one scored row (a SIM window or a trunk call).

    ``idempotency_key`` is deterministic in the caller's ``batch_key`` and the row, so applying
    the same micro-batch twice is recognised by the store.
    """

    action: Action
    number: str
    scope: str
    fraud_type: str
    score: float
    reasons: tuple[str, ...]
    model_name: str | None
    model_version: str | None
    #: the operator whose CDRs produced the row
    reported_by: str | None
    #: window end (SIM) or call start (spoofing): when the behaviour was seen
    observed_at: dt.datetime
    idempotency_key: str
    ttl_hours: int
    #: one line: the threshold crossed, or the allowlist that won
    why: str
    trunk_type: str | None = None
    trunk_id: str | None = None
    #: what an analyst checks the decision against (feature row, window, recent calls)
    evidence: Mapping[str, Any] | None = None


class Allowlist(Protocol):
    """Answers "may this number never be blocked, and why?" for the numbers of one batch."""

    def why_allowed(self, number: str) -> str | None: ...


@dataclass(frozen=True)
class StaticAllowlist:
    """Numbering-plan specials plus given sets; the store builds one per batch
    (:meth:`streaming.blocklist.store.BlocklistStore.allowlist_for`)."""

    plan: NumberingPlan | None = None
    registered_businesses: frozenset[str] = frozenset()
    analyst_cleared: frozenset[str] = frozenset()

    def why_allowed(self, number: str) -> str | None:
        from features.numbering import load_numbering_plan

        return allowlist_reason(
            number,
            plan=self.plan or load_numbering_plan(),
            sources={
                **dict.fromkeys(self.registered_businesses, "registered_business"),
                **dict.fromkeys(self.analyst_cleared, "analyst_cleared"),
            },
        )


_SOURCE_TEXT = {
    "registered_business": "allowlisted: registered business number",
    "analyst_cleared": "allowlisted: cleared by an analyst",
}


def allowlist_reason(number: str, *, plan: NumberingPlan, sources: Mapping[str, str]) -> str | None:
    """The one-line reason a number is allowlisted, else ``None``. Emergency numbers and short
    codes come first: they are never blocked whatever a table says."""
    kind = plan.special_numbers().get(number)
    if kind == "emergency":
        return "allowlisted: emergency number"
    if kind == "short_code":
        return "allowlisted: short code"
    source = sources.get(number)
    if source is not None:
        return _SOURCE_TEXT.get(source, f"allowlisted: {source}")
    return None
