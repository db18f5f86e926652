"""Flags as the stream leaves them (decisions with their evidence snapshot), written through the
store: what the console's tests look at. No Spark."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from models.quantiles import FeatureQuantiles
from models.reasons import Reason
from streaming.blocklist.decision import Decision
from streaming.evidence import with_reasons

#: an hour before this run's clock hour: the console judges blocks in force by the wall clock, so
#: sample blocks must be newer than their TTL (a fixed date ran out 30 days after it)
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
#: the block threshold the sample decisions crossed
BLOCK_ABOVE = 0.9


def calls(number: str, *, start: dt.datetime, n: int, answered_every: int = 5) -> list[dict]:
    """``n`` calls over the last hours, as ``streaming.evidence`` stores them (newest last)."""
    out = []
    for i in range(n):
        t = start + dt.timedelta(minutes=7 * i)
        answered = i % answered_every == 0
        out.append(
            {
                "time": t.isoformat(),
                "callee": f"+8490{(int(number[-4:]) * 31 + i * 97) % 10_000_000:07d}",
                "result": "16" if answered else "19",
                "duration_s": 41 if answered else 0,
                "cell": f"452-04-{1200 + i % 3}",
                "imei": "356938035643809",
            }
        )
    return out


#: the population the sample model version was validated on: up to 199 callees, any answered share
POPULATION = FeatureQuantiles.from_frame(
    pd.DataFrame({"distinct_callees_24h": range(200), "answered_share_24h": [i / 199 for i in range(200)]}),
    ["distinct_callees_24h", "answered_share_24h"],
)
REASONS = (
    Reason("distinct_callees_24h", 198.0, 1.2, "called 198 distinct numbers in 24h"),
    Reason("answered_share_24h", 0.08, 0.4, "8% of calls answered"),
)


def sim_decision(
    number: str,
    score: float,
    *,
    action: str = "block",
    fraud_type: str = "spam_robocall",
    batch: str = "b1",
    operator: str = "viettel",
    version: str = "7",
    observed: dt.datetime = NOW,
    n_calls: int = 24,
) -> Decision:
    start = observed - dt.timedelta(hours=24)
    evidence = {
        "kind": "sim",
        "window_start": start.isoformat(),
        "window_end": observed.isoformat(),
        "features": {
            "calls_out_24h": 212.0,
            "distinct_callees_24h": 198.0,
            "answered_share_24h": 0.08,
            "calls_in_24h": 0.0,
            "hours_seen_24h": 9.0,
        },
        "recent_calls": calls(number, start=observed - dt.timedelta(hours=3), n=n_calls),
    }
    # what the stream adds at decision time: each reason's value and percentile
    evidence = with_reasons(evidence, REASONS, POPULATION)
    return Decision(
        action=action,  # type: ignore[arg-type]
        number=number,
        scope="all",
        fraud_type=fraud_type,
        score=score,
        reasons=tuple(r.text for r in REASONS),
        model_name="simguard-spam-sim",
        model_version=version,
        reported_by=operator,
        observed_at=observed,
        idempotency_key=f"sim:{batch}:{number}:{fraud_type}",
        ttl_hours=720,
        why=f"score {score:.3f} above the block threshold {BLOCK_ABOVE}"
        if action == "block"
        else f"score {score:.3f} between review 0.7 and block {BLOCK_ABOVE}",
        evidence=evidence,
    )


def populate(store, *, now: dt.datetime = NOW) -> dict[str, list[str]]:
    """Three blocks (one seen in two overlapping windows), four reviews; returns the numbers."""
    blocks = ["+84961000001", "+84961000002", "+84961000003"]
    reviews = ["+84962000001", "+84962000002", "+84962000003", "+84962000004"]
    ds = [sim_decision(n, 0.99 - i * 0.02, batch="b1") for i, n in enumerate(blocks)]
    ds += [
        sim_decision(
            n,
            0.85 - i * 0.03,
            action="review",
            batch="b1",
            operator=("viettel", "mobifone")[i % 2],
            version=("7", "8")[i % 2],
        )
        for i, n in enumerate(reviews)
    ]
    store.apply_decisions(ds, now=now - dt.timedelta(hours=2))
    # the next micro-batch sees the first SIM again in an overlapping window
    store.apply_decisions(
        [sim_decision(blocks[0], 0.995, batch="b2", observed=now - dt.timedelta(minutes=30))],
        now=now - dt.timedelta(hours=1),
    )
    return {"blocks": blocks, "reviews": reviews}
