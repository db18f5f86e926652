"""Benchmark: ``simguard evaluate`` on the rows a cold stream computes.

A stream started at the first record of the test day, with no state before it, scores the test
day's SIMs without the day before: an ordinary SIM's first calls of the day have no history. This
builds the test day's feature rows from the test day's CDRs alone (the batch definitions, every
scoring point) and scores them with ``evaluate``'s own code (``models.tasks.evaluate_model``: the
registered champion at its stored threshold, the rules tuned on the usual validation day), beside
the usual warm evaluation of the same day. A cold ``bench_stream.py`` run (no ``--warm-day``) on
the same day is then compared with the cold rows.

The cold rows are scored twice: at the version's threshold and at its cold threshold (chosen in
training for the target FPR on the validation day's rows computed from that day's CDRs alone),
which the stream applies to rows whose window reaches before the state's first record.

    .venv/bin/python bench/bench_cold.py --cdrs /tmp/b10/sim/cdrs --labels /tmp/b10/sim/labels \\
        --home /tmp/b10/home --work /tmp/bench_cold

Writes ``<work>/bench_cold.json`` and prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cdrs", required=True, type=Path, help="canonical CDR Parquet folder (three days or more)")
    parser.add_argument("--labels", required=True, type=Path, help="the simulator's labels/ folder")
    parser.add_argument("--home", required=True, type=Path, help="SIMGuard home with registered champions")
    parser.add_argument("--work", required=True, type=Path)
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["SIMGUARD_HOME"] = str(args.home.resolve())

    from models.dataset import read_labels
    from models.registry import load_champion
    from models.split import Split
    from models.tasks import evaluate_model
    from pipeline.config import load_settings
    from pipeline.modeling import prepare, rows_alone
    from pipeline.spark import build_spark

    settings = load_settings()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    t = time.monotonic()
    warm = prepare(spark, settings, cdrs=args.cdrs, labels=args.labels)
    b = warm.boundaries
    print(f"warm rows (evaluate's): {time.monotonic() - t:.1f} s; test day {b.test_start} to {b.test_end}", flush=True)

    sim_labels, call_labels = read_labels(args.labels)
    t = time.monotonic()
    # the test day's rows from its CDRs alone: what a stream started on an empty state computes
    cold = rows_alone(spark, settings, args.cdrs, args.labels, (b.test_start, b.test_end),
                      sim_labels=sim_labels, call_labels=call_labels)
    print(f"cold rows of the test day alone: {time.monotonic() - t:.1f} s", flush=True)

    result: dict = {"command": " ".join(sys.argv), "boundaries": b.as_dict(), "tasks": {}}
    print("\n| model | rows | threshold | test rows | precision | recall | FPR | rules recall | rules FPR |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for task, data in warm.tasks.items():
        model = load_champion(
            data.spec.registered_name, settings.mlflow_tracking_uri, alias=settings.models.champion_alias,
            registry_uri=settings.mlflow.registry_uri,
        )
        cold_split = Split(train=data.split.train, validation=data.split.validation, test=cold[task])
        runs = {
            "warm": (model, data.split),
            "cold, at the warm threshold": (model, cold_split),
            # what the stream applies to rows whose window reaches before its first record
            "cold, at the cold threshold": (model.with_threshold(model.cold_threshold), cold_split),
        }
        result["tasks"][task] = {"version": model.version, "cold_threshold": model.card.cold_threshold}
        for name, (scorer, split) in runs.items():
            report = evaluate_model(
                data.spec, scorer, split, settings=settings.models, features=settings.features, boundaries=b
            ).report
            m, rules = report["test"], report["baseline"]["test"]
            result["tasks"][task][name] = {"test_rows": len(split.test), "test": m, "rules": rules}
            print(
                f"| {task} v{model.version} | {name} | {scorer.threshold:.4g} | {len(split.test):,} | "
                f"{m['precision']:.3f} | {m['recall_at_fpr']:.3f} | {m['fpr']:.5f} | {rules['recall_at_fpr']:.3f} | "
                f"{rules['fpr']:.5f} |"
            )
    spark.stop()
    (work / "bench_cold.json").write_text(json.dumps(result, indent=2, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
