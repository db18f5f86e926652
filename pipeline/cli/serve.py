"""``simguard serve``: the blocklist HTTP API with its background distribution loop."""

from __future__ import annotations

from typing import Optional

import typer

from features.errors import ConfigError
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
    """Serve GET /blocklist (operators), POST /unblock (analysts), /healthz and /metrics.

    Refuses placeholder tokens, and a bind off loopback without service.tls_certfile/tls_keyfile."""
    import uvicorn

    from streaming.blocklist.loop import DistributionLoop
    from streaming.blocklist.service import check_serving, create_app
    from streaming.blocklist.sink import BlocklistSink

    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: a TCP port is 1 to 65535")
    settings = settings_from(ctx)
    svc = settings.service
    bind_host, bind_port = host or svc.host, port or svc.port
    check_serving(host=bind_host, service=svc, blocklist=settings.blocklist)
    sink = BlocklistSink.from_settings(settings, publish_kafka=svc.publish_kafka)
    loop = DistributionLoop(sink.distribute, interval_s=svc.loop_interval_s) if distribute else None
    app = create_app(store=sink.store, blocklist=settings.blocklist, service=svc, plan=sink.plan, loop=loop)
    scheme = "https" if svc.tls_certfile else "http"
    typer.echo(
        f"blocklist API on {scheme}://{bind_host}:{bind_port} (version {sink.store.head_version()}; "
        f"distribution {'every ' + format(svc.loop_interval_s, 'g') + ' s' if loop else 'off'})"
    )
    try:
        uvicorn.run(
            app,
            host=bind_host,
            port=bind_port,
            log_level="info",
            ssl_certfile=str(svc.tls_certfile) if svc.tls_certfile else None,
            ssl_keyfile=str(svc.tls_keyfile) if svc.tls_keyfile else None,
        )
    finally:
        sink.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
