"""Benchmark: the spoof-call model against the spoofing rules, per-call features only.

``simguard train`` builds the per-SIM features too, which takes tens of minutes at 100k
subscribers on a loaded 2-core machine; the spoof-call task does not read them. This script
builds only the per-call features (``features.calls.build_call_features`` through Spark, the
same function ``pipeline.featurize.build_features`` calls), then runs exactly the spoof-call
task of ``pipeline.modeling.train``: label (``TaskSpec.label``), split by day
(``models.split``), ``models.tasks.fit_task`` (training, threshold on validation) and
``models.tasks.evaluate_model`` (test, beside the rules baseline). It also
reports the same booster without the rules that flag a call outright (``certain_features`` in
``models.scoring``), to show what each part contributes.

    .venv/bin/simguard simulate --subscribers 100000 --days 3 --seed 11 --out /tmp/spoof11
    .venv/bin/python bench/bench_spoof.py --sim /tmp/spoof11 --work /tmp/bench_spoof11

Per ``--sim`` folder, the call feature table is cached under ``<work>/<folder>/call_features-<key>``
(the key hashes the CDR files, the feature settings, ``features/calls.py`` and the numbering
plan) and the figures go to ``<work>/<folder>/bench_spoof.json``. Prints Markdown for
BENCHMARKS.md.

One difference from ``simguard train``: the day boundaries come from the last trunk call, not
from the last SIM row (the SIM rows are not built); both fall on the same last day of a
simulation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _features_key(cdrs: Path, settings: Any) -> str:
    from features.numbering import DEFAULT_PLAN_PATH

    digest = hashlib.sha256()
    for p in sorted(cdrs.rglob("*.parquet")):
        st = p.stat()
        digest.update(f"{p.relative_to(cdrs)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    digest.update(settings.features.model_dump_json().encode())
    digest.update((ROOT / "features" / "calls.py").read_bytes())
    digest.update(DEFAULT_PLAN_PATH.read_bytes())
    return digest.hexdigest()[:16]


def build_call_table(settings: Any, cdrs: Path, out: Path) -> float:
    """The per-call feature table at ``out`` (Parquet); returns the Spark seconds (0 if cached)."""
    if (out / "_SUCCESS").exists():
        return 0.0
    from features.calls import build_call_features
    from pipeline.featurize import read_cdrs
    from pipeline.spark import build_spark

    t = time.perf_counter()
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    try:
        if out.exists():
            shutil.rmtree(out)
        build_call_features(read_cdrs(spark, cdrs), settings=settings.features).write.parquet(str(out))
    finally:
        spark.stop()
    return time.perf_counter() - t


def _kind_recall(units, threshold: float) -> dict[str, float]:
    """Recall per spoofing kind (``population`` of positives) at ``score > threshold``."""
    from models.scoring import SCORE

    pos = units[units["role"] == "positive"]
    return {
        str(k): float((g[SCORE] > threshold).mean()) for k, g in pos.groupby("population", sort=True)
    }


def _at_fpr(units, fpr: float) -> dict[str, Any]:
    """The operating point on the test curve with FPR <= ``fpr``: its recall, overall and by kind."""
    from models.evaluate import threshold_at_fpr
    from models.scoring import SCORE

    neg = units.loc[units["role"] == "negative", SCORE].to_numpy(dtype=np.float64)
    threshold = threshold_at_fpr(neg, fpr)
    pos = units.loc[units["role"] == "positive", SCORE].to_numpy(dtype=np.float64)
    return {
        "fpr": fpr,
        "threshold": threshold,
        "achieved_fpr": float((neg > threshold).mean()),
        "recall": float((pos > threshold).mean()),
        "recall_by_kind": _kind_recall(units, threshold),
    }


def run(sim: Path, work: Path, *, train_seed: int | None, config: Path) -> dict[str, Any]:
    import pandas as pd

    from models.dataset import read_labels
    from models.split import day_boundaries, scored_at
    from models.tasks import SPOOF_CALL, evaluate_model, fit_task, split_frame, task_spec, tune_threshold
    from pipeline.config import load_settings

    settings = load_settings(config)
    jars = settings.jars_dir if settings.jars_dir.is_absolute() else ROOT / settings.jars_dir
    settings = settings.model_copy(update={"home": work / "home", "jars_dir": jars})
    cdrs, labels = sim / "cdrs", sim / "labels"
    work.mkdir(parents=True, exist_ok=True)
    table = work / f"call_features-{_features_key(cdrs, settings)}"
    spark_s = build_call_table(settings, cdrs, table)

    t = time.perf_counter()
    calls = pd.read_parquet(table).sort_values("record_id", kind="stable").reset_index(drop=True)
    _, call_labels = read_labels(labels)
    spec = task_spec(SPOOF_CALL, settings.models, settings.features)
    labelled = spec.label(calls, call_labels)
    split_cfg = settings.models.split
    boundaries = day_boundaries(
        scored_at(labelled).max(), validation_days=split_cfg.validation_days, test_days=split_cfg.test_days
    )
    split = split_frame(labelled, boundaries)
    seed = settings.models.seed if train_seed is None else train_seed
    model = fit_task(spec, split, settings=settings.models, features=settings.features, seed=seed)
    evaluation = evaluate_model(
        spec, model, split, settings=settings.models, features=settings.features, boundaries=boundaries
    )
    # the same booster without the rules that flag a row outright (models.scoring), for comparison
    alone = model.with_certain_features(())
    alone = alone.with_threshold(tune_threshold(spec, alone, split.validation))
    alone_units = evaluate_model(
        spec, alone, split, settings=settings.models, features=settings.features, boundaries=boundaries
    ).model_units
    model_s = time.perf_counter() - t

    report = evaluation.report
    test, base = report["test"], report["baseline"]["test"]
    rules_fpr = base["fpr"]
    result = {
        "sim": str(sim),
        "train_seed": seed,
        "spark_features_s": round(spark_s, 1),
        "train_and_evaluate_s": round(model_s, 1),
        "rows": report["split"],
        "best_iteration": model.card.best_iteration,
        "n_positive": test["n_positive"],
        "n_negative": test["n_negative"],
        "rules": {
            "recall": base["recall_at_fpr"],
            "fpr": rules_fpr,
            "recall_by_kind": base["recall_by_population"],
            "fpr_by_population": base["fpr_by_population"],
        },
        "model_at_validation_threshold": {
            "threshold": test["threshold"],
            "recall": test["recall_at_fpr"],
            "fpr": test["fpr"],
            "recall_by_kind": test["recall_by_population"],
            "fpr_by_population": test["fpr_by_population"],
        },
        "model_at_rules_fpr": _at_fpr(evaluation.model_units, rules_fpr) if not math.isnan(rules_fpr) else None,
        "model_at_target_fpr": _at_fpr(evaluation.model_units, spec.target_fpr),
        "rules_at_target_fpr_curve": base["recall_at_fpr_curve"],
        "certain_features": list(model.card.certain_features),
        "booster_alone_at_rules_fpr": _at_fpr(alone_units, rules_fpr) if not math.isnan(rules_fpr) else None,
        "booster_alone_at_target_fpr": _at_fpr(alone_units, spec.target_fpr),
        "comparison": report["comparison"],
        "pr_auc": test["pr_auc"],
    }
    (work / "bench_spoof.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _fmt_kinds(kinds: dict[str, float]) -> str:
    short = {"domestic_cli_not_roaming": "dom", "do_not_originate": "dno", "unallocated": "unalloc"}
    return ", ".join(f"{short.get(k, k)} {v:.3f}" for k, v in sorted(kinds.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", type=Path, action="append", required=True,
                        help="a `simguard simulate --out` folder (cdrs/, labels/); repeat for several")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (one sub-folder per --sim)")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="LightGBM seed (default: models.seed from the config, as `simguard train`)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    args = parser.parse_args(argv)
    results = []
    for sim in args.sim:
        sim = sim.resolve()
        print(f"[{time.strftime('%H:%M:%S')}] {sim}", file=sys.stderr, flush=True)
        results.append(run(sim, args.work.resolve() / sim.name, train_seed=args.train_seed, config=args.config))
    print("| data | spoofed / legitimate test calls | rules recall | rules FPR | model recall at rules' FPR "
          "| model recall at 0.1% FPR (test curve) | model at validation threshold: recall, FPR |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        at_rules, at_target = r["model_at_rules_fpr"], r["model_at_target_fpr"]
        mv = r["model_at_validation_threshold"]
        print(f"| {Path(r['sim']).name} | {r['n_positive']:,} / {r['n_negative']:,} | {r['rules']['recall']:.4f} "
              f"| {r['rules']['fpr']:.4%} | {at_rules['recall']:.4f} | {at_target['recall']:.4f} "
              f"| {mv['recall']:.4f}, {mv['fpr']:.4%} |")
    print("\nthe booster alone (without the rules that flag a row outright):")
    for r in results:
        print(f"- {Path(r['sim']).name}: recall at rules' FPR {r['booster_alone_at_rules_fpr']['recall']:.4f} "
              f"({_fmt_kinds(r['booster_alone_at_rules_fpr']['recall_by_kind'])}), at 0.1% FPR "
              f"{r['booster_alone_at_target_fpr']['recall']:.4f} "
              f"({_fmt_kinds(r['booster_alone_at_target_fpr']['recall_by_kind'])}); "
              f"certain features in the card: {r['certain_features']}")
    print("\nby spoofing kind (recall):")
    for r in results:
        print(f"- {Path(r['sim']).name}: rules {_fmt_kinds(r['rules']['recall_by_kind'])}; "
              f"model at rules' FPR {_fmt_kinds(r['model_at_rules_fpr']['recall_by_kind'])}; "
              f"model at 0.1% FPR {_fmt_kinds(r['model_at_target_fpr']['recall_by_kind'])}")
        print(f"  rules FPR by group: {r['rules']['fpr_by_population']}; "
              f"model (validation threshold) FPR by group: {r['model_at_validation_threshold']['fpr_by_population']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
