"""``block_above: null``: the policy blocks above the scoring model version's validated threshold,
carried by the rows as ``model_threshold`` (unit tier: no database, no Spark, no Kafka)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.numbering import load_numbering_plan
from pipeline.config import DEFAULT_CONFIG, load_settings
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.sink import BlocklistSink
from streaming.blocklist.store import BlocklistStore
from streaming.policy import FraudTypePolicy, PolicySettings, StaticAllowlist, decide_calls, decide_sims

T = pd.Timestamp("2026-11-02T06:00", tz="UTC")
NOBODY = StaticAllowlist(plan=load_numbering_plan())


def sims(rows: list[tuple[str, str, float]], threshold: float | None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["number", "fraud_type", "score"])
    frame["operator"] = "viettel"
    frame["reasons"] = [["called 212 distinct numbers in 24h"]] * len(frame)
    frame["model_name"] = "simguard-spam-sim"
    frame["model_version"] = "4"
    frame["window_end"] = T
    if threshold is not None:
        frame["model_threshold"] = threshold
    return frame


def test_defaults_block_above_the_model_versions_threshold() -> None:
    policy = PolicySettings()
    assert all(policy.for_type(t).block_above is None for t in ("spam_robocall", "simbox", "wangiri", "spoofed_call"))
    assert load_settings(DEFAULT_CONFIG, environ={}).policy == policy
    frame = sims(
        [
            ("+84961000001", "spam_robocall", 0.99),  # above review_above and the threshold: block
            ("+84961000002", "spam_robocall", 0.80),  # above review_above (0.7), not the threshold: review
            ("+84961000003", "spam_robocall", 0.85),  # == threshold: not above it, review
            ("+84961000004", "spam_robocall", 0.50),  # below both: nothing
            ("+84961000005", "simbox", 0.86),
        ],
        threshold=0.85,
    )
    got = {d.number: d for d in decide_sims(frame, policy=policy, allowlist=NOBODY, batch_key="q:1")}
    assert {n: d.action for n, d in got.items()} == {
        "+84961000001": "block",
        "+84961000002": "review",
        "+84961000003": "review",
        "+84961000005": "block",
    }
    assert got["+84961000001"].why == "score 0.9900 > model threshold 0.85 (simguard-spam-sim v4)"
    assert got["+84961000002"].why == "score 0.8000 > review_above 0.7"


def test_a_threshold_below_review_above_blocks_everything_above_it_and_reviews_nothing() -> None:
    # a low validated threshold (0.3) under review_above (0.7): the review band is empty, and
    # rows between the two still block (they are what evaluate counts as flagged)
    frame = sims(
        [("+84961000001", "spam_robocall", 0.5), ("+84961000002", "spam_robocall", 0.31),
         ("+84961000003", "spam_robocall", 0.3), ("+84961000004", "wangiri", 0.95)],
        threshold=0.3,
    )
    got = decide_sims(frame, policy=PolicySettings(), allowlist=NOBODY, batch_key="q:1")
    assert [(d.number, d.action) for d in got] == [
        ("+84961000001", "block"), ("+84961000002", "block"), ("+84961000004", "block"),
    ]


def test_null_block_above_without_the_models_threshold_is_an_error_not_a_guess() -> None:
    with pytest.raises(BlocklistError, match="model_threshold"):
        decide_sims(sims([("+84961000001", "spam_robocall", 0.99)], threshold=None),
                    policy=PolicySettings(), allowlist=NOBODY, batch_key="q:1")
    # a fixed block_above needs no model threshold
    fixed = PolicySettings(spam_robocall=FraudTypePolicy(block_above=0.9, review_above=0.7, ttl_hours=1))
    got = decide_sims(sims([("+84961000001", "spam_robocall", 0.99)], threshold=None),
                      policy=fixed, allowlist=NOBODY, batch_key="q:1")
    assert [(d.action, d.why) for d in got] == [("block", "score 0.9900 > block_above 0.9")]
    with pytest.raises(ValueError, match="review_above must not be above block_above"):
        FraudTypePolicy(block_above=0.5, review_above=0.8, ttl_hours=1)
    FraudTypePolicy(block_above=None, review_above=0.8, ttl_hours=1)  # any threshold may come


def test_spoofed_calls_use_the_spoof_models_threshold() -> None:
    frame = pd.DataFrame(
        {
            "cli": ["+84961000001", "+84961000002", "+84961000003", "+84961000004"],
            "in_trunk_type": ["international_gateway", "international_gateway", "subscriber",
                              "international_gateway"],
            "in_trunk_id": "IGW1",
            "operator": "mobifone",
            "score": [0.45, 0.65, 0.99, 0.2],
            "reasons": [["domestic CLI on an international gateway"]] * 4,
            "model_name": "simguard-spoof-call",
            "model_version": "2",
            "model_threshold": 0.4,
            "start_time": [T + pd.Timedelta(seconds=i) for i in range(4)],
            "record_id": ["r1", "r2", "r3", "r4"],
        }
    )
    got = decide_calls(frame, policy=PolicySettings(), allowlist=NOBODY, batch_key="c:1")
    # review_above 0.6 is above the threshold: no review band; subscriber ingress never counts
    assert [(d.number, d.action, d.scope) for d in got] == [
        ("+84961000001", "block", "trunk:international_gateway"),
        ("+84961000002", "block", "trunk:international_gateway"),
    ]
    assert got[0].why == "score 0.4500 > model threshold 0.4 (simguard-spoof-call v2)"


def test_the_sinks_prefilter_keeps_every_row_that_can_block(tmp_path) -> None:
    store = BlocklistStore.open(f"sqlite:///{tmp_path / 'bl.db'}")
    sink = BlocklistSink(store=store, policy=PolicySettings())
    try:
        # without the threshold only review_above is known; with it, the lower of the two
        assert sink.min_score("sim") == 0.6
        assert sink.min_score("sim", model_threshold=0.2) == 0.2
        assert sink.min_score("sim", model_threshold=0.9) == 0.6
        assert sink.min_score("call", model_threshold=0.35) == 0.35
        frame = sims([("+84961000001", "spam_robocall", 0.4)], threshold=0.35)
        report = sink.process(batch_key="q:1", sims=frame)
        assert report.decisions == {("spam_robocall", "block"): 1}
        assert store.is_blocked("+84961000001")
    finally:
        sink.close()
