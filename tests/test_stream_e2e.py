"""``simguard stream`` end to end against a real broker: simulated CDRs of the test day through
Kafka, validation, streaming features, the champions trained by ``simguard train``, the policy and
the blocklist store, compared with what ``simguard evaluate`` says about the same champions.

One session-scoped world (``tests/stream_run.py``, shared with the console's tests): a fixed-seed
simulation (``SUBSCRIBERS`` x ``DAYS``), both models trained with ``pipeline.modeling.train`` into
a temporary MLflow, ``pipeline.modeling.evaluate`` run once
on the same data, and one Kafka topic holding the **last (test) day** of CDRs in event-time order,
plus a handful of malformed records and injected look-alikes (below). One uninterrupted stream run
(session-scoped, in the test session's SparkSession) is the reference of both tests: its blocks are
compared with evaluate, and a SIGKILLed and restarted run must reproduce it exactly.

How the stream is compared with evaluate. Evaluate flags a SIM when any of its test-day rows
(scored after the test day's first midnight) scores above the version's validated threshold,
and a trunk call when it scores above the spoof model's threshold; the policy blocks at exactly
that point (``block_above: null``). The stream replays the validation day and the test day (a
warm stream: a test-day row's 24 h window reaches back into the day before, as evaluate's does),
in micro-batches that end wherever ``max_offsets_per_trigger`` ends them, mid-minute included;
the comparison counts detections of rows scored on the test day and test-day calls, i.e.
evaluate's units. The data predates the wall clock, so the stream's
``validation.max_past_days`` is widened (environment, as an operator would for a backfill). The
counting (flagged units, precision, recall) is ``pipeline.report``'s, the code behind
``simguard report``.

Never-blocked numbers: copies of a real robocaller's test-day traffic are injected under 113, 114
and 115 (emergency) and under a new line of a registered call centre (the simulator's
``labels/registered_businesses.parquet`` plus that line, given as ``blocklist.registered_businesses``),
each on its own cell, IMEI and fresh callee numbers so that no simulated SIM's features change. The
new line dials only like the robocaller: on one of the centre's simulated lines, its own call-centre
traffic would share the SIM's windows, and whether the mix still scores like a robocaller would
depend on the model, not on the allowlist this test is about.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from stream_run import BATCHES, INJECTED_EMERGENCY, Receiver, stream_env

from pipeline.report import flagged_by_stream, precision_recall, read_store

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.slow]

SIMGUARD = str(Path(sys.executable).with_name("simguard"))


def stream_flagged(store: dict[str, pd.DataFrame], world: dict[str, Any]) -> tuple[set[str], set[str]]:
    """SIMs with a block-level detection of a test-day row; trunk calls with one (evaluate's units)."""
    return flagged_by_stream(
        store["detections"], observed_after=world["test_start"], sim_threshold=world["spam"][0].threshold,
        call_threshold=world["spoof"][0].threshold,
    )


def evaluate_flagged(units: pd.DataFrame, threshold: float) -> set[str]:
    return set(units.index[(units["role"] != "excluded") & (units["score"] > threshold)])


def with_allowlist(units: pd.DataFrame, world: dict[str, Any]) -> pd.DataFrame:
    """Evaluate's SIM units with the policy's allowlist applied as evaluate applies it (allowlisted
    numbers score 0): emergency numbers, short codes, registered businesses. A no-op once
    evaluate itself masks them."""
    from features.numbering import load_numbering_plan
    from streaming.policy import StaticAllowlist

    registered = pd.read_parquet(world["registered_businesses"])["number"]
    allow = StaticAllowlist(plan=load_numbering_plan(), registered_businesses=frozenset(registered))
    masked = units.copy()
    spared = [n for n in masked.index if allow.why_allowed(str(n)) is not None]
    masked.loc[spared, "score"] = 0.0
    return masked


# -- tests -------------------------------------------------------------------------------------


def test_stream_blocks_match_evaluate_and_carry_reasons(
    world: dict[str, Any], reference: dict[str, Any], spark: Any
) -> None:
    summary, env = reference["summary"], reference["env"]
    # several micro-batches, each scoring the SIMs it saw as of the minutes they called in
    assert summary["batches"] >= BATCHES
    # ... on state Spark keeps: the SIM processors' in the query's checkpoint (read through Spark's
    # state data sources), the call features' in a Delta table
    checkpoint = env["SIMGUARD_STREAM__STATE_URI"] + "/checkpoints/detect"
    operators = spark.read.format("state-metadata").load(checkpoint).collect()
    names = {json.loads(o["operatorProperties"])["stateVariables"][0]["stateName"]: o for o in operators}
    assert set(names) == {"buckets", "members"}
    assert all(o["operatorName"] == "transformWithStateExec" for o in operators)
    for name, o in names.items():
        kept = spark.read.format("statestore").option("operatorId", o["operatorId"]).option("stateVarName", name)
        assert kept.load(checkpoint).count() > 100, name
    state = spark.read.format("delta").load(env["SIMGUARD_STREAM__STATE_URI"] + "/state")
    assert {r["part"] for r in state.select("part").distinct().collect()} == {"cli", "trunk", "seen"}

    # (c) every record is accounted for: processed or dead-lettered, with its reason
    assert summary["records_in"] == world["records"] == summary["valid"] + summary["dead_lettered"]
    assert summary["valid"] == world["valid"]
    assert summary["dead_lettered"] == len(world["malformed"])
    assert summary["dead_letter_reasons"] == {code: 1 for code, _ in world["malformed"]}

    store = reference["store"]
    sims, calls = stream_flagged(store, world)
    report = {}
    for name, flagged in (("spam", sims), ("spoof", calls)):
        model, ev = world[name]
        units, test = ev.model_units, ev.report["test"]
        # this file counts units exactly as evaluate does ...
        mine = precision_recall(evaluate_flagged(units, model.threshold), units)
        assert (mine["tp"], mine["fp"], mine["fn"]) == (test["tp"], test["fp"], test["fn"]), (name, mine, test)
        # ... and the reference is evaluate's units under the policy's allowlist (SIMs: the
        # numbers the policy may never block; evaluate is to mask them the same way)
        reference = with_allowlist(units, world) if name == "spam" else units
        expected = evaluate_flagged(reference, model.threshold)
        report[name] = {
            "stream": precision_recall(flagged, units),
            "evaluate_with_allowlist": precision_recall(expected, reference),
            "evaluate_report": {k: test[k] for k in ("tp", "fp", "fn", "precision", "recall_at_fpr")},
            "only_stream": sorted(flagged - expected)[:10],
            "only_evaluate": sorted(expected - flagged)[:10],
        }
    print(json.dumps(report, indent=1, default=str))
    for name in ("spam", "spoof"):
        got, want = report[name]["stream"], report[name]["evaluate_with_allowlist"]
        assert want["tp"] > 10, f"{name}: too few true positives for a meaningful comparison: {want}"
        # (a) the stream's blocks at the champion's operating point, as evaluate counts them
        assert abs(got["precision"] - want["precision"]) <= 0.01, (name, report[name])
        assert abs(got["recall"] - want["recall"]) <= 0.01, (name, report[name])

    # (b) every block names its reasons and the model version that decided it
    entries = store["entries"]
    blocks = entries[entries["action"] == "block"]
    assert len(blocks) >= 20
    versions = {world["spam"][0].name: str(world["spam"][0].version),
                world["spoof"][0].name: str(world["spoof"][0].version)}
    for _, e in blocks.iterrows():
        reasons = json.loads(e["reasons"]) if isinstance(e["reasons"], str) else list(e["reasons"])
        assert reasons and all(isinstance(r, str) and r for r in reasons), e.to_dict()
        assert e["model_name"] in versions and e["model_version"] == versions[e["model_name"]], e.to_dict()
        assert e["decided_by"] == "model", e.to_dict()
    # ... and the threshold: streamed from an empty state, the validation day's SIM windows reach
    # before the stream's first record (the cold threshold); the test day's do not
    cold = blocks["note"].str.contains("> cold threshold")
    assert (cold | blocks["note"].str.contains("> model threshold")).all()
    assert cold.any() and (~cold).any() and (blocks.loc[cold, "model_name"] == world["spam"][0].name).all()

    # (d) each detection's evidence places its reasons' values in the version's population
    det = store["detections"]
    for _, d in det[det["outcome"] == "block"].iterrows():
        evidence = json.loads(d["evidence"]) if isinstance(d["evidence"], str) else d["evidence"]
        reasons = json.loads(d["reasons"]) if isinstance(d["reasons"], str) else list(d["reasons"])
        assert [r["text"] for r in evidence["reasons"]] == reasons, d.to_dict()
        assert all(r["percentile"] is None or 0 <= r["percentile"] <= 100 for r in evidence["reasons"])
        assert any(r["percentile"] is not None for r in evidence["reasons"]), d.to_dict()

    # never blocked: emergency numbers and a registered call centre that dials like a robocaller
    assert_never_blocked(store, world)


def test_report_and_csv_exports_of_the_run(world: dict[str, Any], reference: dict[str, Any], tmp_path: Path
                                          ) -> None:
    """``simguard report`` and ``simguard blocklist export --operator all`` on the reference run."""
    env = {**os.environ, **reference["env"]}
    out = subprocess.run([SIMGUARD, "blocklist", "export", "--operator", "all", "--out", str(tmp_path / "csv")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    files = sorted((tmp_path / "csv").glob("blocklist-*.csv"))
    assert [f.name for f in files] == sorted(f"blocklist-{op}.csv" for op in ("viettel", "vinaphone", "mobifone",
                                                                               "vietnamobile"))
    store = reference["store"]
    in_force = store["entries"]["action"].eq("block").sum() - store["entries"]["action"].eq("unblock").sum()
    for f in files:
        assert f"version={len(store['entries'])} " in f.read_text().splitlines()[0]
        assert len(pd.read_csv(f, comment="#")) == in_force

    args = [SIMGUARD, "report", "--labels", str(world["sim"] / "labels"), "--cdrs", str(world["replay_dir"]),
            "--csv-dir", str(tmp_path / "csv")]
    out = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["stream"] == json.loads(json.dumps(reference["summary"]))
    assert report["period"]["cdrs"] == world["valid"]
    # every SIM and call the stream blocked is counted once, as fraud or not
    sims, calls = flagged_by_stream(store["detections"])
    assert report["sims"]["tp"] + report["sims"]["fp"] <= len(sims) and report["sims"]["tp"] > 10
    assert report["spoofed_calls"]["tp"] + report["spoofed_calls"]["fp"] == len(calls)
    # the injected copies are on the allowlist, not blocked
    assert report["spared_by_allowlist"] >= 4
    delay = report["delay"]
    assert delay["sims"] == report["sims"]["tp"]
    assert 0 <= delay["minutes"]["median"] <= delay["minutes"]["p95"] <= 24 * 60
    assert 0 <= delay["calls"]["median"] <= delay["calls"]["p95"]
    assert report["where"]["csv"] == [str(f) for f in files]
    text = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stdout + text.stderr
    print(text.stdout)
    for needle in ("dead-lettered", "precision", "recall", "detection delay", reference["env"][
            "SIMGUARD_KAFKA__TOPICS__BLOCKLIST_PREFIX"] + ".viettel", "simguard serve", "mlflow ui"):
        assert needle in text.stdout, needle


def assert_never_blocked(store: dict[str, pd.DataFrame], world: dict[str, Any]) -> None:
    protected = {*INJECTED_EMERGENCY, world["call_centre"]}
    assert not set(store["entries"]["number"]) & protected
    det = store["detections"]
    spam_model, _ = world["spam"]
    for number in protected:
        mine = det[det["number"] == number]
        # they did score like the robocaller they copy: the allowlist, not the model, spared them
        assert (mine["score"] > spam_model.threshold).any(), (number, mine[["score", "outcome", "why"]])
        assert set(mine["outcome"]) == {"allowed"} and mine["why"].str.startswith("allowlisted").all(), mine
    # the robocaller they copy is blocked
    assert (store["entries"]["number"] == world["robocaller"]).any()


def _batches(env: dict[str, str]) -> int:
    from streaming.blocklist.batches import read_batches
    from streaming.blocklist.db import make_engine

    engine = make_engine(env["SIMGUARD_DATABASE__URL"])
    try:
        return len(read_batches(engine))
    except Exception:  # the job has not created the table yet
        return 0
    finally:
        engine.dispose()


def _wait_for_batches(env: dict[str, str], n: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _batches(env) < n:
        assert proc.poll() is None, f"the stream job exited ({proc.returncode}) before {n} micro-batches"
        assert time.monotonic() < deadline, f"{n} micro-batches did not finish in {timeout_s}s"
        time.sleep(0.2)


def _child(env: dict[str, str], log: Path) -> subprocess.Popen:
    # own session: the SIGKILL reaches the JVM and Python workers too, as a crash would
    return subprocess.Popen(
        [SIMGUARD, "stream", "--available-now"], env={**os.environ, **env}, stdout=log.open("ab"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    # the JVM and workers are in the same process group; wait until none is left
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("processes of the killed job are still alive")


def test_killed_and_restarted_job_gives_the_uninterrupted_blocklist(
    world: dict[str, Any], reference: dict[str, Any], kafka_bootstrap: str, tmp_path: Path
) -> None:
    ref_summary, ref = reference["summary"], reference["hook"]
    # the same job as a child process, SIGKILLed mid-run while its operator's webhook is down
    hook = Receiver()
    run = tmp_path / "interrupted"
    run.mkdir()
    env = stream_env(world, run, kafka_bootstrap, SIMGUARD_BLOCKLIST__OPERATORS__viettel__webhook_url=hook.url)
    log = run / "stream.log"
    started = time.monotonic()
    try:
        proc = _child(env, log)
        # killed after the second micro-batch decided, while the third runs
        _wait_for_batches(env, 2, proc, timeout_s=1200)
        _kill(proc)
        hook.start()  # the operator comes back; the restarted job delivers what waited
        proc = _child(env, log)  # restarted from the checkpoint the killed process left
        assert proc.wait(1800) == 0, log.read_text()[-3000:]
        interrupted_seconds = time.monotonic() - started
        # the last summary the CLI printed (its stdout shares the log with Spark's and Python's logging)
        summary = json.loads([line for line in log.read_text().splitlines() if line.startswith("{")][-1])
        # one distribution round from the CLI for anything still in backoff
        out = subprocess.run([SIMGUARD, "blocklist", "publish"], env={**os.environ, **env}, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        print(f"reference {reference['seconds']:.1f}s, interrupted and restarted {interrupted_seconds:.1f}s; "
              f"summary {summary}")

        # the validate query counted every record once, whatever was re-run
        assert summary["records_in"] == ref_summary["records_in"] == world["records"]
        assert summary["dead_lettered"] == ref_summary["dead_lettered"] == len(world["malformed"])
        assert summary["batches"] == ref_summary["batches"] >= BATCHES  # several micro-batches, each once

        ref_store, got_store = reference["store"], read_store(env["SIMGUARD_DATABASE__URL"])
        columns = ["id", "number", "scope", "action", "fraud_type", "model_version"]
        want, got = ref_store["entries"][columns], got_store["entries"][columns]
        assert len(want) >= 20
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
        assert not got.duplicated(["number", "scope", "action"]).any()  # nothing blocked twice
        assert not got_store["detections"]["idempotency_key"].duplicated().any()
        assert len(got_store["detections"]) == len(ref_store["detections"])

        # the operator that was down got every entry once back, each with its idempotency key
        assert set(got_store["deliveries"]["status"]) == {"delivered"}
        expected = {(int(r.id), int(r.id), r.number, r.scope, r.action, r.fraud_type) for r in want.itertuples()}
        assert ref.entries() == expected
        assert hook.entries() == expected
        assert_never_blocked(got_store, world)
    finally:
        hook.stop()
