"""Benchmark: the driver's share of a micro-batch, building its Spark plans (nothing runs).

Every micro-batch builds its DataFrames again: the state rows of its CDRs, the scoring points,
the SIM features as of those points over the state, and the call features. Classic PySpark
analyses the plan at every DataFrame step and sends every ``Column`` call to the JVM over Py4J,
so this costs the driver whole seconds per micro-batch however few records it holds. The
script builds those plans ``--rounds`` times over a state table made from ``--minutes`` of the
CDRs (in ``--work``) and prints seconds and Py4J round trips per part and round.

    .venv/bin/python bench/bench_plans.py --cdrs /tmp/sim10k/cdrs --work /tmp/bench_plans
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", required=True, type=Path, help="canonical CDR Parquet folder")
    parser.add_argument("--work", required=True, type=Path, help="where the state table is made")
    parser.add_argument("--minutes", type=int, default=60, help="minutes of CDRs in the state table")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from py4j.clientserver import ClientServerConnection
    from pyspark.sql import functions as F

    from features.calls import assemble_call_features, merge_cli_rows, merge_trunk_rows, trunk_calls
    from features.numbering import load_numbering_plan
    from features.sim import ENTITY, sim_features_at
    from features.sim_windows import scoring_points
    from pipeline.config import load_settings
    from pipeline.featurize import read_cdrs
    from pipeline.spark import build_spark
    from streaming.state import PART, StateTable, state_rows

    settings = load_settings()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    fs, plan = settings.features, load_numbering_plan()
    cdrs = read_cdrs(spark, args.cdrs)
    first = cdrs.agg(F.min("start_time")).first()[0]
    cdrs = cdrs.where(F.col("start_time") < F.lit(first) + F.expr(f"INTERVAL {args.minutes} MINUTES"))
    state = StateTable(spark, str(args.work / "state"))
    if not state.exists():
        state.append(state_rows(cdrs, settings=fs, plan=plan), app_id="bench_plans", batch_id=0)

    trips: Counter[str] = Counter()
    send = ClientServerConnection.send_command
    part = ["-"]

    def counted(self, command):
        trips[part[0]] += 1
        return send(self, command)

    ClientServerConnection.send_command = counted

    def build() -> dict[str, float]:
        laps: dict[str, float] = {}

        def lap(name: str, started: float) -> float:
            laps[name] = round(time.monotonic() - started, 2)
            part[0] = "-"
            return time.monotonic()

        t = time.monotonic()
        part[0] = "state rows"
        rows = state_rows(cdrs, settings=fs, plan=plan)
        t = lap("state rows", t)
        part[0] = "points"
        points = scoring_points(rows.where(F.col(PART) == "sim"), settings=fs, horizon=1e10)
        t = lap("points", t)
        part[0] = "sim features"
        sims = state.read("sim", since=0).join(points.select(ENTITY).distinct(), [ENTITY], "left_semi")
        sim_features_at(sims, state.read("ctx", since=0), points, settings=fs, plan=plan, evidence=True)
        t = lap("sim features", t)
        part[0] = "call features"
        assemble_call_features(
            trunk_calls(cdrs),
            merge_cli_rows(state.read("cli", since=0)),
            merge_trunk_rows(state.read("trunk", since=0)),
            settings=fs,
            plan=plan,
        )
        lap("call features", t)
        return laps

    for r in range(args.rounds):
        trips.clear()
        laps = build()
        parts = ", ".join(f"{k} {v} s / {trips[k]:,} trips" for k, v in laps.items())
        total = f"{sum(laps.values()):.2f} s, {sum(trips.values()):,} Py4J round trips"
        print(f"round {r + 1}: {total} ({parts})", flush=True)
    ClientServerConnection.send_command = send
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
