"""``simguard score``: batch scoring and backfill with the champions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import settings_from
from pipeline.cli.train import stage_progress


def score(
    ctx: typer.Context,
    cdrs: Annotated[Path, typer.Option("--cdrs", help="Folder of canonical CDR Parquet files.")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv.")],
) -> None:
    """One row per flagged SIM or call, with score, fraud type and reasons."""
    from rich.console import Console

    from models.registry import registry_errors
    from pipeline.batch_score import score as run_score
    from pipeline.spark import build_spark

    settings = settings_from(ctx)
    console = Console(stderr=True, highlight=False)
    with stage_progress(console, "scoring") as step:
        step("starting Spark")
        spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
        with registry_errors(settings.mlflow_tracking_uri):
            result = run_score(spark, settings, cdrs=cdrs, out=out, progress=step)
    counts = result.groupby("kind").size().to_dict() if len(result) else {}
    typer.echo(
        f"flagged {counts.get('sim', 0):,} SIMs and {counts.get('call', 0):,} calls -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("score")(score)
