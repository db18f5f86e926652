"""A small blocklist history for the audit tests: blocks, reviews, a spoofed call, an unblock,
an allowlist change and an expiry, each its own audit record."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from factories import fixed_policy

from streaming.blocklist.store import BlocklistStore
from streaming.policy import StaticAllowlist, decide_calls, decide_sims

NOW = dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC)
POLICY = fixed_policy()
#: every number the history uses (none may appear in a regulator's output)
NUMBERS = ("+84961000001", "+84961000002", "+84961000003", "+88212345678", "+84912345678", "+84281234567")


def sims(store: BlocklistStore, rows: list[tuple[str, str, float]], *, batch: str, at: dt.datetime, operator="viettel",
         version: str = "7"):
    frame = pd.DataFrame(rows, columns=["number", "fraud_type", "score"])
    frame["operator"] = operator
    frame["reasons"] = [["called 212 distinct numbers in 24h"]] * len(frame)
    frame["model_name"] = "simguard-spam-sim"
    frame["model_version"] = version
    frame["window_end"] = pd.Timestamp(at)
    return decide_sims(frame, policy=POLICY, allowlist=store.allowlist_for(frame["number"]), batch_key=batch)


def spoofed_calls(batch: str, at: dt.datetime):
    frame = pd.DataFrame(
        {
            "record_id": ["r1", "r2"],
            "cli": [NUMBERS[4]] * 2,
            "in_trunk_type": ["international_gateway"] * 2,
            "in_trunk_id": ["GW-HK-1", "GW-SG-2"],
            "operator": ["mobifone"] * 2,
            "score": [0.95, 0.7],
            "reasons": [["domestic CLI on an international gateway"]] * 2,
            "model_version": ["2"] * 2,
            "start_time": [pd.Timestamp(at)] * 2,
        }
    )
    return decide_calls(frame, policy=POLICY, allowlist=StaticAllowlist(), batch_key=batch)


def history(store: BlocklistStore, *, start: dt.datetime = NOW) -> None:
    """Six state changes over three days, each one audit record."""
    day = dt.timedelta(days=1)
    store.apply_decisions(
        sims(store, [(NUMBERS[0], "simbox", 0.8), (NUMBERS[1], "simbox", 0.8),
                     (NUMBERS[3], "wangiri", 0.95)], batch="s:1", at=start),
        now=start,
    )
    store.apply_decisions(spoofed_calls("c:1", start), now=start)
    store.apply_decisions(
        sims(store, [(NUMBERS[0], "spam_robocall", 0.99), (NUMBERS[1], "simbox", 0.9), (NUMBERS[2], "simbox", 0.99)],
             batch="s:2", at=start + day,
             operator="vinaphone", version="8"),
        now=start + day,
    )
    store.unblock(NUMBERS[0], analyst="lan", reason="subscriber appeal #42", request_id="appeal-42", now=start + day)
    store.sync_registered_businesses([NUMBERS[5], NUMBERS[2]], now=start + 2 * day)
    store.expire(start + 3 * day)  # the spoofed-call rule (24 h) lapses; the Wangiri block (7 days) stays
