"""``simguard features build``."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli import settings_from

features_app = typer.Typer(help="Build feature tables from canonical CDRs.", no_args_is_help=True)


@features_app.command("build")
def build(
    ctx: typer.Context,
    cdrs: Path = typer.Option(..., "--cdrs", help="Folder of canonical CDR Parquet files."),
    out: Path = typer.Option(..., "--out", help="Folder for sim_features/ and call_features/."),
) -> None:
    """Per-SIM window features and per-call spoofing features, as Parquet."""
    from rich.console import Console

    from pipeline.featurize import build_features
    from pipeline.spark import build_spark

    settings = settings_from(ctx)
    console = Console(stderr=True)
    with console.status("building features with Spark"):
        spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
        tables = build_features(spark, cdrs, features=settings.features, out_dir=out)
        n_sim = spark.read.parquet(str(tables.sim)).count()
        n_call = spark.read.parquet(str(tables.calls)).count()
    typer.echo(f"{n_sim} SIM-window rows -> {tables.sim}")
    typer.echo(f"{n_call} trunk-call rows -> {tables.calls}")


def register(app: typer.Typer) -> None:
    app.add_typer(features_app, name="features")
