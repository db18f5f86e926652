"""``simguard kafka up|down|status``: the local single-node broker."""

from __future__ import annotations

import typer

from pipeline.cli import settings_from

kafka_app = typer.Typer(help="Run the local single-node Kafka broker (KRaft).", no_args_is_help=True)


@kafka_app.command("up")
def up(ctx: typer.Context) -> None:
    """Start the broker (formats storage on first use); safe to run twice."""
    from pipeline.local import local_broker

    broker = local_broker(settings_from(ctx))
    was_running = broker.status().running
    status = broker.start()
    verb = "already running" if was_running else "started"
    typer.echo(f"kafka {verb}: {status.bootstrap_servers} (pid {status.pid}, data in {broker.home})")


@kafka_app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop exactly the broker that `kafka up` started."""
    from pipeline.local import local_broker

    broker = local_broker(settings_from(ctx))
    if broker.stop():
        typer.echo("kafka stopped")
    else:
        typer.echo("kafka was not running")


@kafka_app.command("status")
def status(ctx: typer.Context) -> None:
    """Say whether the local broker runs; exit 1 when it does not."""
    from pipeline.local import local_broker

    st = local_broker(settings_from(ctx)).status()
    typer.echo(f"kafka {st.detail}: {st.bootstrap_servers}" + (f" (pid {st.pid})" if st.pid else ""))
    if not st.running:
        raise typer.Exit(1)


@kafka_app.command("delete-topics")
def delete_topics(
    ctx: typer.Context,
    prefix: str = typer.Option(..., "--prefix", help="Delete every topic whose name starts with this."),
    timeout_s: float = typer.Option(60.0, "--timeout", help="Seconds to wait until they are gone."),
) -> None:
    """Delete a run's topics (e.g. the demo's, before it runs again) and wait until they are gone."""
    import time

    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    from features.errors import PlatformError

    if len(prefix) < 3:
        raise typer.BadParameter("give a prefix of at least 3 characters", param_hint="--prefix")
    settings = settings_from(ctx)
    try:
        admin = KafkaAdminClient(**settings.kafka.client_options(), client_id="simguard-cli")
    except KafkaError as exc:
        raise PlatformError(
            f"cannot reach Kafka at {settings.kafka.bootstrap_servers} ({exc}); start it with `simguard kafka up`"
        ) from None
    try:
        doomed = sorted(t for t in admin.list_topics() if t.startswith(prefix))
        if doomed:
            admin.delete_topics(doomed, timeout_ms=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        while doomed and any(t.startswith(prefix) for t in admin.list_topics()):
            if time.monotonic() > deadline:
                raise PlatformError(f"topics {doomed} were not deleted within {timeout_s:g}s")
            time.sleep(0.5)
    finally:
        admin.close()
    typer.echo(f"deleted {len(doomed)} topic(s) starting with {prefix!r}")


@kafka_app.command("roundtrip")
def roundtrip(
    ctx: typer.Context,
    records: int = typer.Option(1000, "--records", min=1, help="How many CDRs to send."),
) -> None:
    """Send canonical CDRs through a fresh topic and read them back with Spark's Kafka connector."""
    from pipeline.roundtrip import kafka_round_trip
    from pipeline.spark import build_spark

    settings = settings_from(ctx)
    spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
    result = kafka_round_trip(spark, settings.kafka, records=records)
    typer.echo(
        f"round trip through {result.topic}: sent {result.sent} with kafka-python "
        f"({result.produce_s:.2f}s), Spark read {result.received} back through spark-sql-kafka "
        f"({result.spark_read_s:.2f}s), {result.matched} identical"
    )
    if result.matched != result.sent:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
