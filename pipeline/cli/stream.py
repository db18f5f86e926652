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
    wait_for_topics: bool = typer.Option(
        False, "--wait-for-topics",
        help="Wait for missing CDR / dead-letter topics instead of creating them (topics managed elsewhere).",
    ),
    warm_from: str | None = typer.Option(
        None, "--warm-from",
        help="Canonical CDR Parquet (simguard ingest output; a folder or a URI such as hdfs:// or s3a://) from "
        "before the topic's records, e.g. yesterday's: "
        "loaded into a new state first, so the first micro-batches are not scored cold.",
    ),
    stop_grace_s: float = typer.Option(
        120.0, "--stop-grace", min=0.0,
        help="On SIGINT/SIGTERM, seconds to let running micro-batches finish before stopping them anyway.",
    ),
) -> None:
    """Run the streaming detection job (validate, features, champion models, policy, blocklists).

    Missing topics are created (or waited for); SIGINT / SIGTERM stop the queries between
    micro-batches, with their offsets committed, and exit 0."""
    import logging

    from pipeline.spark import build_spark
    from pipeline.stream import GracefulStop, run_stream

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = settings_from(ctx)
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    try:
        with GracefulStop(spark, grace_s=stop_grace_s) as stopper:
            summary = run_stream(
                spark, settings, available_now=available_now, topics="wait" if wait_for_topics else "create",
                stopper=stopper, say=lambda line: typer.echo(line, err=True), warm_from=warm_from,
            )
    finally:
        spark.stop()
    typer.echo(json.dumps(summary, sort_keys=True))
    if stopper.signal_name is not None:
        cut = sorted(name for name, clean in stopper.stopped_cleanly.items() if not clean)
        if not stopper.stopped_cleanly:
            how = "no query had started"
        elif cut:
            how = f"{', '.join(cut)} stopped mid-batch after {stop_grace_s:g} s (re-run on restart)"
        else:
            how = f"{len(stopper.stopped_cleanly)} queries stopped at a micro-batch boundary, offsets committed"
        typer.echo(f"simguard stream stopped on {stopper.signal_name}: {how}", err=True)


def register(app: typer.Typer) -> None:
    app.command("stream")(stream)
