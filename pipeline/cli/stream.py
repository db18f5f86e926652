"""``simguard stream``: Kafka CDRs to operator blocklists."""

from __future__ import annotations

import json

import typer

from pipeline.cli import settings_from


def stream(
    ctx: typer.Context,
    available_now: bool = typer.Option(
        False, "--available-now", help="Process what is in the topic, then stop (backfills, tests)."
    ),
) -> None:
    """Run the streaming detection job (validate, features, champion models, policy, blocklists)."""
    import logging

    from pipeline.spark import build_spark
    from pipeline.stream import run_stream

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = settings_from(ctx)
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    summary = run_stream(spark, settings, available_now=available_now)
    typer.echo(json.dumps(summary, sort_keys=True))


def register(app: typer.Typer) -> None:
    app.command("stream")(stream)
