"""Policy: thresholds per fraud type, the allowlist always wins, spoofed calls give trunk rules
(unit tier: no database, no Spark, no Kafka)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import fixed_policy
from pydantic import ValidationError

from features.numbering import load_numbering_plan
from streaming.blocklist.errors import BlocklistError
from streaming.policy import (
    SCOPE_ALL,
    FraudTypePolicy,
    PolicySettings,
    StaticAllowlist,
    block_thresholds,
    decide_calls,
    decide_sims,
    trunk_scope,
)

T = pd.Timestamp("2026-11-02T06:00", tz="UTC")
POLICY = fixed_policy()
PLAN = load_numbering_plan()
NOBODY = StaticAllowlist(plan=PLAN)


def sims(rows: list[tuple[str, str, float]], **extra: object) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["number", "fraud_type", "score"])
    frame["operator"] = "viettel"
    frame["reasons"] = [["called 212 distinct numbers in 24h", "95% of answered calls under 10 s"]] * len(frame)
    frame["model_name"] = "simguard-spam-sim"
    frame["model_version"] = "7"
    frame["window_end"] = T
    for k, v in extra.items():
        frame[k] = v
    return frame


def calls(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["cli", "in_trunk_type", "in_trunk_id", "score"])
    frame["operator"] = "mobifone"
    frame["reasons"] = [["presents a domestic mobile number but arrived on an international gateway"]] * len(frame)
    frame["model_version"] = "2"
    frame["start_time"] = [T + pd.Timedelta(seconds=i) for i in range(len(frame))]
    return frame


def by_number(decisions):
    return {d.number: d for d in decisions}


def test_block_review_allow_by_fraud_type_threshold() -> None:
    frame = sims(
        [
            ("+84961000001", "spam_robocall", 0.99),  # > 0.95: block
            ("+84961000002", "spam_robocall", 0.95),  # == block_above: review, not block
            ("+84961000003", "spam_robocall", 0.70),  # == review_above: allowed, no decision
            ("+84961000004", "simbox", 0.96),  # simbox needs > 0.97 to block: review
            ("+84961000005", "simbox", 0.98),
            ("+88212345678", "wangiri", 0.91),
            ("+84961000006", "wangiri", 0.10),
        ]
    )
    got = by_number(decide_sims(frame, policy=POLICY, allowlist=NOBODY, batch_key="sim:1"))
    assert {n: d.action for n, d in got.items()} == {
        "+84961000001": "block",
        "+84961000002": "review",
        "+84961000004": "review",
        "+84961000005": "block",
        "+88212345678": "block",
    }
    block = got["+84961000001"]
    assert block.scope == SCOPE_ALL and block.ttl_hours == POLICY.spam_robocall.ttl_hours
    assert block.reasons == ("called 212 distinct numbers in 24h", "95% of answered calls under 10 s")
    assert block.model_version == "7" and block.reported_by == "viettel"
    assert "0.9900 > block_above 0.95" in block.why
    assert got["+88212345678"].ttl_hours == POLICY.wangiri.ttl_hours != POLICY.simbox.ttl_hours


@pytest.mark.parametrize("number", ["112", "113", "114", "115", "+84113", "+84115", "5656", "156"])
def test_emergency_numbers_and_short_codes_are_never_blocked(number: str) -> None:
    frame = sims([(number, "spam_robocall", 0.9999)])
    [decision] = decide_sims(frame, policy=POLICY, allowlist=NOBODY, batch_key="sim:1")
    assert decision.action == "allow"
    assert decision.why in {"allowlisted: emergency number", "allowlisted: short code"}


def test_registered_call_centre_and_analyst_cleared_number_stay_allowed() -> None:
    call_centre, cleared, other = "+842439123456", "+84961000077", "+84961000078"
    allow = StaticAllowlist(
        plan=PLAN, registered_businesses=frozenset({call_centre}), analyst_cleared=frozenset({cleared})
    )
    frame = sims([(call_centre, "spam_robocall", 0.999), (cleared, "simbox", 0.999), (other, "simbox", 0.999)])
    got = by_number(decide_sims(frame, policy=POLICY, allowlist=allow, batch_key="sim:1"))
    assert got[call_centre].action == "allow" and got[call_centre].why == "allowlisted: registered business number"
    assert got[cleared].action == "allow" and got[cleared].why == "allowlisted: cleared by an analyst"
    assert got[other].action == "block"


def test_spoofed_call_gives_a_trunk_rule_never_a_block_of_the_cli() -> None:
    victim = "+84912345678"
    frame = calls(
        [
            (victim, "international_gateway", "GW-HK-1", 0.97),
            (victim, "international_gateway", "GW-SG-2", 0.93),
            (victim, "domestic_interconnect", "IC-VNPT-1", 0.7),  # between 0.6 and 0.9: review
            ("+84912345679", "subscriber", None, 0.99),  # authenticated by its SIM: never a candidate
            ("+84912345680", "international_gateway", "GW-HK-1", 0.5),  # below review
        ]
    )
    decisions = decide_calls(
        frame, policy=POLICY, allowlist=NOBODY, batch_key="calls:3", model_name="simguard-spoof-call"
    )
    assert [(d.action, d.scope, d.trunk_id) for d in decisions] == [
        ("block", "trunk:international_gateway", "GW-HK-1"),
        ("block", "trunk:international_gateway", "GW-SG-2"),
        ("review", "trunk:domestic_interconnect", "IC-VNPT-1"),
    ]
    assert all(d.scope != SCOPE_ALL and d.number == victim and d.fraud_type == "spoofed_call" for d in decisions)
    assert all(d.ttl_hours == POLICY.spoofed_call.ttl_hours for d in decisions)
    assert all(d.model_name == "simguard-spoof-call" and d.reported_by == "mobifone" for d in decisions)
    # one key per call: every call counts once against its trunk
    assert len({d.idempotency_key for d in decisions}) == 3
    assert trunk_scope("international_gateway") == "trunk:international_gateway"


def test_spoofed_emergency_cli_is_allowed_too() -> None:
    [decision] = decide_calls(
        calls([("113", "international_gateway", "GW-1", 0.99)]), policy=POLICY, allowlist=NOBODY, batch_key="c:1"
    )
    assert decision.action == "allow" and decision.scope == "trunk:international_gateway"


def test_long_keys_are_hashed_to_fit_the_store() -> None:
    [decision] = decide_calls(
        calls([("+84912345678", "international_gateway", "GW-" + "x" * 300, 0.99)]),
        policy=POLICY,
        allowlist=NOBODY,
        batch_key="calls@6f1d2c3e-5b7a-4c1e-9d0f-2a3b4c5d6e7f:12",
    )
    assert len(decision.idempotency_key) <= 255 and decision.idempotency_key.startswith("calls@6f1d2c3e")
    again = decide_calls(
        calls([("+84912345678", "international_gateway", "GW-" + "x" * 300, 0.99)]),
        policy=POLICY,
        allowlist=NOBODY,
        batch_key="calls@6f1d2c3e-5b7a-4c1e-9d0f-2a3b4c5d6e7f:12",
    )
    assert again[0].idempotency_key == decision.idempotency_key


def test_keys_are_deterministic_and_distinguish_windows() -> None:
    frame = pd.concat(
        [
            sims([("+84961000001", "spam_robocall", 0.99)]),
            sims([("+84961000001", "spam_robocall", 0.99)], window_end=T + pd.Timedelta(hours=6)),
        ],
        ignore_index=True,
    )
    first = decide_sims(frame, policy=POLICY, allowlist=NOBODY, batch_key="sim:41")
    again = decide_sims(frame, policy=POLICY, allowlist=NOBODY, batch_key="sim:41")
    assert [d.idempotency_key for d in first] == [d.idempotency_key for d in again]
    assert len({d.idempotency_key for d in first}) == 2
    assert all(k.startswith("sim:41:all|+84961000001@") for k in (d.idempotency_key for d in first))


def test_arrow_shaped_input_naive_times_and_missing_scores() -> None:
    frame = sims([("+84961000001", "spam_robocall", 0.99), ("+84961000002", "spam_robocall", np.nan)])
    frame["reasons"] = [np.array(["a", "b"]), None]
    frame["window_end"] = pd.Timestamp("2026-11-02T06:00")  # naive: Spark with session time zone UTC
    frame["model_version"] = 7  # the registry's version is an int
    [decision] = decide_sims(frame, policy=POLICY, allowlist=NOBODY, batch_key="b")
    assert decision.reasons == ("a", "b") and decision.model_version == "7"
    assert decision.observed_at.isoformat() == "2026-11-02T06:00:00+00:00"


def test_a_malformed_number_is_never_blocked_sim_wide() -> None:
    garbage = "+" + "9" * 40
    assert decide_sims(sims([(garbage, "spam_robocall", 0.99)]), policy=POLICY, allowlist=NOBODY, batch_key="b") == []
    assert (
        decide_calls(
            calls([(garbage, "international_gateway", "GW", 0.99)]), policy=POLICY, allowlist=NOBODY, batch_key="b"
        )
        == []
    )
    [decision] = decide_sims(
        sims([("0961000001", "spam_robocall", 0.99)]), policy=POLICY, allowlist=NOBODY, batch_key="b"
    )
    assert decision.action == "allow" and decision.why.startswith("not an E.164 number")


def test_bad_input_is_one_line_error() -> None:
    with pytest.raises(BlocklistError, match="no policy for fraud type") as err:
        decide_sims(sims([("+84961000001", "normal", 0.99)]), policy=POLICY, allowlist=NOBODY, batch_key="b")
    assert "\n" not in str(err.value)
    with pytest.raises(BlocklistError, match="lack column"):
        decide_calls(
            pd.DataFrame({"cli": ["+84961000001"], "score": [0.99]}), policy=POLICY, allowlist=NOBODY, batch_key="b"
        )
    with pytest.raises(BlocklistError, match="decide_calls"):
        decide_sims(sims([("+84961000001", "spoofed_call", 0.99)]), policy=POLICY, allowlist=NOBODY, batch_key="b")


def test_policy_settings_validate() -> None:
    with pytest.raises(ValidationError, match="review_above must not be above block_above"):
        FraudTypePolicy(block_above=0.5, review_above=0.8, ttl_hours=1)
    with pytest.raises(ValidationError):
        PolicySettings.model_validate({"spam_robocall": {"block_above": 0.9, "review_above": 0.5, "ttl_hours": 0}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        PolicySettings.model_validate({"spam": {"block_above": 0.9, "review_above": 0.5, "ttl_hours": 1}})


def test_a_cold_row_is_judged_at_its_own_threshold_and_says_so() -> None:
    """With ``block_above: null`` each row carries its version's threshold: a row whose window
    reaches before the stream's first record carries the cold one, falls in the review band below
    it, and a block above it names it."""
    policy = PolicySettings()
    frame = sims(
        [
            ("+84961000001", "spam_robocall", 0.80),  # warm: above the model threshold
            ("+84961000002", "spam_robocall", 0.80),  # cold: between review_above and the cold threshold
            ("+84961000003", "spam_robocall", 0.995),  # cold: above the cold threshold
        ],
        model_threshold=[0.0133, 0.99, 0.99],
        cold=[False, True, True],
    )
    got = by_number(decide_sims(frame, policy=policy, allowlist=NOBODY, batch_key="sim:1"))
    assert {n: d.action for n, d in got.items()} == {
        "+84961000001": "block", "+84961000002": "review", "+84961000003": "block",
    }
    assert "> model threshold 0.0133" in got["+84961000001"].why
    assert "> cold threshold 0.99" in got["+84961000003"].why


def test_block_thresholds_are_the_fixed_block_above_or_the_rows_own() -> None:
    """What the stream picks each SIM's decisive row by: a fixed ``block_above`` wins over the
    row's model threshold, cold or warm; where it is null, the row's own threshold."""
    frame = sims([("+84961000001", "spam_robocall", 0.9), ("+84961000002", "simbox", 0.9)],
                 model_threshold=[0.0133, 0.99])
    assert block_thresholds(frame, policy=POLICY).tolist() == [0.95, 0.97]
    assert block_thresholds(frame, policy=PolicySettings()).tolist() == [0.0133, 0.99]
