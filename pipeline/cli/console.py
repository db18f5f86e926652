"""``simguard console`` (the analysts' web app) and ``simguard users add``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from features.errors import ConfigError
from pipeline.cli import settings_from

users_app = typer.Typer(help="Console accounts.", no_args_is_help=True)


def open_console_store(settings):  # -> console.actions.ConsoleStore
    from console.actions import ConsoleStore
    from features.numbering import load_numbering_plan
    from streaming.blocklist.db import make_engine
    from streaming.blocklist.migrate import upgrade

    plan = load_numbering_plan()
    operators = settings.blocklist.for_operators(plan.operators)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    store = ConsoleStore(
        engine, webhook_operators=[op for op, c in operators.items() if c.webhook_url is not None], plan=plan
    )
    return store.configure(
        policy=settings.policy,
        clearance_hours=settings.console.clearance_hours,
        appeal_due_hours=settings.console.appeal_due_hours,
    )


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--password-file {password_file}: {exc.strerror}") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise ConfigError(f"--password-file {password_file}: the first line is empty")
        return lines[0]
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Account name (letters, digits, '.', '_', '-')."),
    role: str = typer.Option(..., "--role", help="analyst, supervisor, regulator or admin."),
    password_file: Optional[Path] = typer.Option(
        None, "--password-file", help="Read the password from the first line of this file (else prompted)."
    ),
) -> None:
    """Create a console account, or reset an existing account's role and password."""
    from console.accounts import add_user

    settings = settings_from(ctx)
    password = _read_password(password_file)
    store = open_console_store(settings)
    try:
        account = add_user(store.engine, name, role, password)
    finally:
        store.close()
    typer.echo(f"user {account.name} ({account.role}) saved")


def console(
    ctx: typer.Context,
    host: Optional[str] = typer.Option(None, "--host", help="Interface to bind (default: console.host)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port to bind (default: console.port)."),
) -> None:
    """Serve the analyst console (review queue, evidence, decisions, appeals)."""
    import uvicorn

    from console.app import create_app
    from console.security import secret_key

    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: a TCP port is 1 to 65535")
    settings = settings_from(ctx)
    cfg = settings.console
    bind_host, bind_port = host or cfg.host, port or cfg.port
    if bind_host not in ("127.0.0.1", "localhost", "::1") and not cfg.secure_cookies:
        raise ConfigError(
            f"serving the console on {bind_host} would send session cookies in clear: bind 127.0.0.1 behind a "
            "TLS proxy and set console.secure_cookies"
        )
    key = (
        cfg.secret_key.get_secret_value() if cfg.secret_key else secret_key(settings.home_abs / "state" / "console.key")
    )
    tokens = {
        op: c.api_token.get_secret_value() for op, c in settings.blocklist.operators.items() if c.api_token is not None
    }
    store = open_console_store(settings)
    app = create_app(store, cfg, secret_key=key, operator_tokens=tokens, audit=settings.audit)
    typer.echo(f"analyst console on http://{bind_host}:{bind_port} (sign in with an account from `simguard users add`)")
    try:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level="info")
    finally:
        store.close()


labels_app = typer.Typer(help="Analysts' outcomes as labels.", no_args_is_help=True)


@labels_app.command("export")
def labels_export(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Label table to write (.parquet or .csv)."),
) -> None:
    """Write analysts' confirms (fraud) and overturns (normal) with the model's feature row."""
    from console.labels import export_labels

    if out.suffix not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out}: use a .parquet or .csv file name")
    store = open_console_store(settings_from(ctx))
    try:
        n = export_labels(store.engine, out)
    finally:
        store.close()
    typer.echo(f"{n} labels written to {out}")


def register(app: typer.Typer) -> None:
    app.command("console")(console)
    app.add_typer(users_app, name="users")
    app.add_typer(labels_app, name="labels")
