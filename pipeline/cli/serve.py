"""``simguard serve``: the blocklist HTTP API with its background distribution loop."""

from __future__ import annotations

from typing import Optional

import typer

from pipeline.cli import settings_from


def serve(
    ctx: typer.Context,
    host: Optional[str] = typer.Option(None, "--host", help="Interface to bind (default: service.host)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port to bind (default: service.port)."),
    distribute: bool = typer.Option(
        True,
        "--distribute/--no-distribute",
        help="Run the loop that expires blocks, publishes to Kafka and delivers webhooks.",
    ),
) -> None:
    """Serve GET /blocklist (operators), POST /unblock (analysts), /healthz and /metrics."""
    import uvicorn

    from streaming.blocklist.sink import BlocklistSink
    from streaming.service import DistributionLoop, create_app

    settings = settings_from(ctx)
    svc = settings.service
    sink = BlocklistSink.from_settings(settings, publish_kafka=svc.publish_kafka)
    loop = DistributionLoop(sink.distribute, interval_s=svc.loop_interval_s) if distribute else None
    app = create_app(store=sink.store, blocklist=settings.blocklist, service=svc, plan=sink.plan, loop=loop)
    bind_host, bind_port = host or svc.host, port or svc.port
    typer.echo(
        f"blocklist API on http://{bind_host}:{bind_port} (version {sink.store.head_version()}; "
        f"distribution {'every ' + format(svc.loop_interval_s, 'g') + ' s' if loop else 'off'})"
    )
    try:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level="info")
    finally:
        sink.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
