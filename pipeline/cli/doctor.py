"""``simguard doctor``."""

from __future__ import annotations

import typer

from pipeline.cli import settings_from


def doctor(ctx: typer.Context) -> None:
    """Check Java, the jars, the Kafka broker, the MLflow store and the database."""
    from rich.console import Console

    from pipeline.doctor import run_checks

    console = Console(highlight=False)
    checks = run_checks(settings_from(ctx))
    width = max(len(c.component) for c in checks)
    for c in checks:
        mark = "[green]ok  [/green]" if c.ok else "[red]FAIL[/red]"
        hint = f" -> {c.hint}" if c.hint and not c.ok else ""
        console.print(f"{mark} {c.component:<{width}}  {c.detail}{hint}", soft_wrap=True)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
