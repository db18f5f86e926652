"""``simguard evaluate``: a registered version of each model beside the rules baseline."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli import settings_from
from pipeline.cli.train import fmt, stage_progress

if TYPE_CHECKING:
    from rich.table import Table


def _clean(value: Any) -> Any:
    """NaN is not JSON: report it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _row(table: Table, name: str, a: Any, b: Any, *, pct: bool = True) -> None:
    gain = a - b if isinstance(a, float) and isinstance(b, float) else None
    table.add_row(name, fmt(a, pct=pct), fmt(b, pct=pct), fmt(gain, pct=pct))


def evaluate(
    ctx: typer.Context,
    cdrs: Annotated[Path, typer.Option("--cdrs", help="Folder of canonical CDR Parquet files.")],
    labels: Annotated[Path, typer.Option("--labels", help="Labels folder (sims.parquet, calls.parquet).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model per line on stdout.")] = False,
    model_version: Annotated[
        str, typer.Option("--model-version", help="'champion' or a registered version number.")
    ] = "champion",
) -> None:
    """Evaluate on the test split (last day): per-entity recall at the target FPR, PR-AUC, rules."""
    from rich.console import Console
    from rich.table import Table

    from models.registry import registry_errors
    from models.tasks import summary_line
    from pipeline.modeling import evaluate as run_evaluate
    from pipeline.spark import build_spark

    settings = settings_from(ctx)
    console = Console(stderr=True, highlight=False)
    with stage_progress(console, "evaluating") as step:
        step("starting Spark")
        spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
        with registry_errors(settings.mlflow_tracking_uri):
            results = run_evaluate(
                spark, settings, cdrs=cdrs, labels=labels, model_version=model_version, progress=step
            )

    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=120)
    for model, evaluation in results:
        line = summary_line(evaluation.report, version=model.version)
        if as_json:
            typer.echo(json.dumps(_clean(line), sort_keys=True))
            continue
        test, base = evaluation.report["test"], evaluation.report["baseline"]["test"]
        table = Table(title=f"{model.name} v{model.version} (test {evaluation.report['split']['test_start']})")
        for col in ("metric", "model", "rules", "model - rules"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        row = partial(_row, table)

        row(f"recall @ validation threshold (target FPR {fmt(line['target_fpr'], pct=True)})",
            test["recall_at_fpr"], base["recall_at_fpr"])
        row("FPR reached on test", test["fpr"], base["fpr"])
        row("recall @ target FPR (test curve)", test["recall_at_fpr_curve"], base["recall_at_fpr_curve"])
        row("model recall @ rules' test FPR", line["model_recall_at_baseline_fpr"], base["recall_at_fpr"])
        row("PR-AUC", test["pr_auc"], base["pr_auc"], pct=False)
        row("ROC-AUC", test["roc_auc"], base["roc_auc"], pct=False)
        for k, v in test["precision_at_k"].items():
            row(f"precision@{k}", v, base["precision_at_k"][k])
        for k, v in test["recall_by_type"].items():
            row(f"recall {k}", v, base["recall_by_type"][k])
        for k, v in test["recall_by_population"].items():
            row(f"recall population {k}", v, base["recall_by_population"].get(k, float("nan")))
        for k, v in test["fpr_by_population"].items():
            row(f"FPR population {k}", v, base["fpr_by_population"].get(k, float("nan")))
        table.add_row("positives / negatives", f"{test['n_positive']:,} / {test['n_negative']:,}", "", "")
        table.add_row("Brier (rows)", fmt(evaluation.report["calibration"]["brier"]), "", "")
        if line["cold_threshold"] is not None:
            table.add_row("cold threshold (FPR on the validation day alone)",
                          f"{line['cold_threshold']:.4g} ({fmt(line['cold_validation_fpr'], pct=True)})", "", "")
        out.print(table)
        labels_ = test["confusion"]["labels"]
        conf = Table(title=f"{model.name} confusion at threshold {test['threshold']:.4g} (rows: true)")
        conf.add_column("true \\ predicted")
        for name in labels_:
            conf.add_column(name, justify="right")
        for name, counts in zip(labels_, test["confusion"]["matrix"], strict=True):
            conf.add_row(name, *(f"{c:,}" for c in counts))
        out.print(conf)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
