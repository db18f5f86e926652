"""What ``partial_block_above`` would have blocked in a recorded stream run, and which value to use.

Reads the store and state a ``bench_stream.py --labels`` run left in ``--work`` and replays the
policy over its block-level SIM detections: a row whose last bucket had not ended in event time
when it was scored (its bucket end is after the newest CDR the deciding ``sim`` micro-batch and the
batches before it had read) counts as a block only above the candidate threshold. Every candidate
blocks a subset of the rows the run blocked, so the replay is exact for the set of blocked SIMs
and the time of each first block (a row the rule holds back goes to review and blocks nothing).

Per candidate it prints SIM precision, recall, false positives by population, the false-positive
rate over the day's normal SIMs and the median calls and minutes before a block per fraud type.
``--target-fpr`` picks the lowest candidate whose false-positive rate is at or under the target
(the models' ``target_fpr``): run it on a day the models were not tested on, then measure that
value on the test day.

    .venv/bin/python bench/partial_threshold.py --work /tmp/bsv --cdrs /tmp/b10/sim/cdrs \\
        --labels /tmp/b10/sim/labels --day 2025-03-04 --target-fpr 0.001
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stream_runs import event_horizon  # noqa: E402

CANDIDATES = (None, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)


def sim_block_rows(work: Path, day: str, truth) -> pd.DataFrame:
    """Block-level SIM detections of ``day`` (bucket ends after its midnight), each with its
    micro-batch, the event time that batch had seen and whether its bucket was still filling."""
    from pipeline.report import BLOCK_OUTCOMES, SIM_TYPES, read_store

    d = read_store(f"sqlite:///{work / 'blocklist.db'}")["detections"]
    d = d[d["fraud_type"].isin(SIM_TYPES) & d["outcome"].isin(BLOCK_OUTCOMES)].copy()
    d["observed_at"] = pd.to_datetime(d["observed_at"], utc=True)
    d = d[d["observed_at"] > pd.Timestamp(day, tz="UTC")]
    # keys are "sim@<query id>:<batch id>:sim:all|<number>@<window>"
    d["batch"] = d["idempotency_key"].str.split(":").str[1].astype(int)
    d["horizon"] = event_horizon(work / "stream", "sim").reindex(d["batch"]).to_numpy()
    d["partial"] = d["observed_at"] > d["horizon"]
    d["at"] = d[["horizon", "observed_at"]].min(axis=1)
    return d.join(truth.sims[["population", "role"]], on="number")


def outcome(rows: pd.DataFrame, truth) -> dict:
    from pipeline.report import detection_delays, precision_recall

    pr = precision_recall(set(rows["number"]), truth.sims)
    negatives = int((truth.sims["role"] == "negative").sum())
    fp = rows[rows["role"] == "negative"].drop_duplicates("number")["population"].value_counts()
    first = rows.sort_values("at").drop_duplicates("number")[["number", "at"]]
    delays = detection_delays(first.rename(columns={"at": "observed_at"}), truth)
    return {
        **pr,
        "fpr": pr["fp"] / negatives,
        "fp_by_population": {str(k): int(v) for k, v in fp.items()},
        "delay": {str(label): {"calls": float(g["calls"].median()), "minutes": float(g["minutes"].median())}
                  for label, g in delays.groupby("label")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path, help="the --work folder of a bench_stream.py run")
    parser.add_argument("--cdrs", required=True, type=Path)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--day", required=True, help="the run's measured day (YYYY-MM-DD)")
    parser.add_argument("--target-fpr", type=float, help="pick the lowest candidate at or under this FPR")
    args = parser.parse_args()

    from pipeline.report import day_files, ground_truth

    truth = ground_truth(args.labels, [p for p in day_files(args.cdrs) if p.parent.name == f"day={args.day}"])
    rows = sim_block_rows(args.work, args.day, truth)
    print(f"{len(rows):,} block-level SIM rows, {rows['partial'].mean():.0%} of them on a half-filled bucket")
    results = []
    print("\n| partial_block_above | TP | FP | FN | precision | recall | FPR | wrong blocks by population "
          "| calls, minutes before block (median) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for t in CANDIDATES:
        kept = rows if t is None else rows[~rows["partial"] | (rows["score"] > t)]
        r = {"partial_block_above": t, **outcome(kept, truth)}
        results.append(r)
        fps = ", ".join(f"{k} {v}" for k, v in r["fp_by_population"].items()) or "-"
        delay = "; ".join(f"{k} {v['calls']:.0f}, {v['minutes']:.0f}" for k, v in r["delay"].items())
        print(f"| {'null' if t is None else t} | {r['tp']} | {r['fp']} | {r['fn']} | {r['precision']:.3f} "
              f"| {r['recall']:.3f} | {r['fpr']:.3%} | {fps} | {delay} |")
    chosen = None
    if args.target_fpr is not None:
        ok = [r for r in results if r["fpr"] <= args.target_fpr]
        chosen = ok[0]["partial_block_above"] if ok else None
        print(f"\nlowest candidate at FPR <= {args.target_fpr:.3%}: {chosen if ok else 'none'}")
    (args.work / "partial_threshold.json").write_text(
        json.dumps({"command": " ".join(sys.argv), "results": results, "chosen": chosen}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
