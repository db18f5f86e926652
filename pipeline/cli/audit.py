"""``simguard audit ...``: the tamper-evident log (verify, head, expire) and the regulator's report."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli import settings_from

audit_app = typer.Typer(help="The regulator's audit: the hash-chained log and the report.", no_args_is_help=True)


def _engine(ctx: typer.Context):
    from streaming.blocklist.db import make_engine
    from streaming.blocklist.migrate import upgrade

    engine = make_engine(settings_from(ctx).database_url)
    upgrade(engine)
    return engine


@audit_app.command("verify")
def verify(
    ctx: typer.Context,
    expected_head: Annotated[
        Optional[str], typer.Option("--head", help="A head hash kept earlier: it must still be in the chain.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
) -> None:
    """Walk the hash chain; exit 1 naming the first record edited, deleted, reordered or inserted."""
    from streaming.blocklist.audit import verify as walk

    engine = _engine(ctx)
    try:
        result = walk(engine, expected_head=expected_head)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(result.as_dict(), sort_keys=True))
    elif result.ok:
        start = f" (records up to #{result.anchor_seq} expired under retention)" if result.anchor_seq else ""
        typer.echo(f"audit log OK: {result.records} records, head #{result.head_seq} {result.head_hash}{start}")
    else:
        typer.echo(f"audit log BROKEN: {result.problem}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("head")
def head(ctx: typer.Context) -> None:
    """Print the head record's seq and hash: keep it, and check a later log against it."""
    from streaming.blocklist.audit import head as last

    engine = _engine(ctx)
    try:
        seq, digest = last(engine)
    finally:
        engine.dispose()
    typer.echo(f"{seq} {digest}")


@audit_app.command("expire")
def expire(ctx: typer.Context) -> None:
    """Delete audit records older than ``audit.retention_days``; the expiry is itself a record."""
    from streaming.blocklist.audit import expire_records

    settings = settings_from(ctx)
    engine = _engine(ctx)
    try:
        n = expire_records(engine, retention_days=settings.audit.retention_days)
    finally:
        engine.dispose()
    typer.echo(f"expired {n} audit records older than {settings.audit.retention_days} days")


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not a date (YYYY-MM-DD): {value!r}") from None


@audit_app.command("report")
def report(
    ctx: typer.Context,
    date_from: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD, UTC).")],
    date_to: Annotated[str, typer.Option("--to", help="Last day, included (YYYY-MM-DD, UTC).")],
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path("report.html"),
    as_json: Annotated[bool, typer.Option("--json", help="Also write the report as JSON beside the HTML.")] = False,
) -> None:
    """The regulator's report: decisions per day, operator, fraud type and model version, overturn
    rates, spoofed calls per trunk, the dossiers in force, and the log's head and verification.
    Numbers appear only as keyed pseudonyms."""
    from pipeline.audit_report import build_audit_report, version_curves, write_html

    settings = settings_from(ctx)
    first, last = _day(date_from), _day(date_to)
    if last < first:
        raise typer.BadParameter("--to is before --from")
    data = build_audit_report(settings, first=first, last=last)
    write_html(data, out, curves=version_curves(settings, data["dossiers"]))
    typer.echo(f"report: {out}")
    if as_json:
        path = out.with_suffix(".json")
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
        typer.echo(f"json: {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
