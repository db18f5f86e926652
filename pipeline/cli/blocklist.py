"""``simguard blocklist ...``: snapshots, a number's history, expiry, allowlist loading, audits."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from pipeline.cli import settings_from

if TYPE_CHECKING:
    from rich.console import Console

    from streaming.blocklist.store import BlocklistStore

blocklist_app = typer.Typer(help="The versioned blocklist: export, inspect, expire, audit.", no_args_is_help=True)


def _store(ctx: typer.Context) -> BlocklistStore:
    from streaming.blocklist.sink import open_store

    return open_store(settings_from(ctx), load_businesses=False)


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


#: C0 and C1 controls (ESC sequences, CR that rewrites a line) and the bidi overrides that reorder text
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _plain(value: object) -> str:
    """A value that came from data or a person, as one line with no control characters."""
    return _CONTROL.sub(lambda m: " " if m.group() in "\t\n\r" else "", "" if value is None else str(value))


def _m(value: object) -> str:
    """:func:`_plain`, and Rich markup in it shown as text (``[red]`` stays ``[red]``)."""
    from rich.markup import escape

    return escape(_plain(value))


def _ts(value: dt.datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")


def _log_warnings(ctx: typer.Context, number: str | None) -> list[str]:
    """Where the tables disagree with the audit log, or the log's chain is broken."""
    from streaming.blocklist.audit import disagreements, verify
    from streaming.blocklist.db import make_engine

    engine = make_engine(settings_from(ctx).database_url)
    try:
        result = verify(engine)
        found = [] if result.ok else [f"the audit log is broken: {result.problem}"]
        found += [f"{d}: this row was changed outside SIMGuard" for d in disagreements(engine, number=number)]
    finally:
        engine.dispose()
    return found


@blocklist_app.command("migrate")
def migrate(ctx: typer.Context) -> None:
    """Bring the blocklist database to the latest schema (every command does this on start)."""
    from streaming.blocklist.migrate import current_revision

    store = _store(ctx)
    try:
        typer.echo(f"blocklist schema at {current_revision(store.engine)}")
    finally:
        store.close()


@blocklist_app.command("export")
def export(
    ctx: typer.Context,
    operator: str = typer.Option(
        ..., "--operator", help="Operator key (viettel, vinaphone, ...), or 'all': one file per operator."
    ),
    out: Path = typer.Option(
        ..., "--out", help="CSV file to write; with --operator all, a folder (blocklist-<operator>.csv in it)."
    ),
    at_version: Optional[int] = typer.Option(None, "--at-version", min=0, help="Default: the latest version."),
) -> None:
    """Write the blocks in force for OPERATOR as CSV; the version is in the file's first line."""
    from streaming.blocklist.export import export_csv

    store = _store(ctx)
    try:
        if operator == "all":
            # one snapshot version for every file, even if the stream writes meanwhile
            version = store.head_version() if at_version is None else at_version
            targets = [(op, out / f"blocklist-{op}.csv") for op in store.plan.operators]
        else:
            version, targets = at_version, [(operator, out)]
        for op, path in targets:
            written, rows = export_csv(store, operator=op, out=path, plan=store.plan, at_version=version)
            typer.echo(f"{path}: {rows} blocks in force at version {written} for {op}")
    finally:
        store.close()


@blocklist_app.command("watch")
def watch(
    ctx: typer.Context,
    operator: str = typer.Option(..., "--operator", help="Operator key (viettel, vinaphone, ...)."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Also the blocks already on the topic."),
    for_seconds: Optional[float] = typer.Option(None, "--for-seconds", min=0.001, help="Stop after this long."),
    cdr_lookback_min: float = typer.Option(
        1440.0, "--cdr-lookback", min=0.0, help="Minutes of the CDR topic read back for the calls before a block."
    ),
) -> None:
    """Print each block as it reaches OPERATOR's Kafka topic, with its latency (from the Kafka
    timestamp of the number's last CDR before the decision) and the calls it made before it."""
    import signal
    import threading

    from pipeline.watch import summarize_blocks, watch_blocks

    settings = settings_from(ctx)
    if operator not in settings.blocklist.operators:
        known = ", ".join(settings.blocklist.operators)
        raise typer.BadParameter(f"unknown operator {operator!r}; configured: {known}", param_hint="--operator")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    topic = f"{settings.kafka.topics.blocklist_prefix}.{operator}"
    typer.echo(f"watching {topic} (CDRs from {settings.kafka.topics.cdrs}); Ctrl-C stops", err=True)

    def show(block: object) -> None:
        for line in block.describe():  # type: ignore[attr-defined]
            typer.echo(line)

    try:
        blocks = watch_blocks(settings.kafka, operator=operator, on_block=show, from_beginning=from_beginning,
                              cdr_lookback_s=cdr_lookback_min * 60, duration_s=for_seconds, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo(f"{topic}: {summarize_blocks(blocks)}")


@blocklist_app.command("show")
def show(ctx: typer.Context, number: str = typer.Argument(..., help="E.164 number, e.g. +84961000001.")) -> None:
    """A number's history: allowlists, current state, entries, detections (why it was flagged), reviews."""
    store = _store(ctx)
    try:
        h = store.history(number)
    finally:
        store.close()
    console = _console()

    def say(text: str = "") -> None:
        console.print(text, soft_wrap=True)  # long lines stay whole, for grep and for copying

    info = store.plan.classify(number)
    say(f"[bold]{_m(number)}[/bold]: {info.kind}" + (f" ({info.operator})" if info.operator else ""))
    for line in _log_warnings(ctx, number):
        say(f"  [red]WARNING[/red]: {_m(line)}")
    if h.special:
        say(f"  always allowed: {h.special.replace('_', ' ')} (numbering plan)")
    for a in h.allowlist:
        say(f"  allowlisted: {_m(a.source)} by {_m(a.added_by or '?')} at {_ts(a.created_at)}: {_m(a.note)}")
    now = dt.datetime.now(dt.UTC)
    for st in h.states:
        if not st.active:
            say(f"  {_m(st.scope)}: not blocked (version {st.version})")
            continue
        lapsed = " (lapsed: lifted at the next expiry round)" if st.expires_at and st.expires_at <= now else ""
        say(f"  {_m(st.scope)}: [red]BLOCKED[/red] until {_ts(st.expires_at)}{lapsed} (version {st.version})")
    if not (h.states or h.entries or h.detections or h.reviews):
        say("  never flagged")
        return
    if h.entries:
        say("entries:")
    for e in h.entries:
        model = f" model {_m(e.model_name)} v{_m(e.model_version)}" if e.model_version else ""
        score = f" {e.score:.3f}" if e.score is not None else ""
        expires = f" expires {_ts(e.expires_at)}" if e.expires_at else ""
        lifts = f" lifts v{e.lifts_version}" if e.lifts_version else ""
        say(
            f"  v{e.version} {_ts(e.created_at)} {e.action} {_m(e.scope)} {_m(e.fraud_type)}{score}"
            f" by {_m(e.decided_by)} ({_m(e.actor or '-')}){model}{expires}{lifts}"
        )
        why = "; ".join(e.reasons) if e.reasons else e.note
        if why:
            say(f"      why: {_m(why)}")
    if h.detections:
        shown = h.detections[-50:]
        say(
            f"detections (last {len(shown)} of {len(h.detections)}):"
            if len(shown) < len(h.detections)
            else "detections:"
        )
    for d in h.detections[-50:]:
        trunk = f" on {_m(d.trunk_type)}/{_m(d.trunk_id)}" if d.trunk_type else ""
        reported = f" reported by {_m(d.reported_by)}" if d.reported_by else ""
        model = f" model v{_m(d.model_version)}" if d.model_version else ""
        say(
            f"  {_ts(d.observed_at)} {_m(d.scope)} {_m(d.fraud_type)} {d.score:.3f} -> {_m(d.outcome)}"
            f"{trunk}{reported}{model}: {_m(d.why)}"
        )
        if d.reasons:
            say(f"      reasons: {_m('; '.join(d.reasons))}")
    if h.reviews:
        say("reviews:")
    for r in h.reviews:
        resolved = f", resolved by {_m(r.resolved_by)} at {_ts(r.resolved_at)}" if r.resolved_by else ""
        say(
            f"  review {r.id}: {_m(r.status)} {_m(r.scope)} {_m(r.fraud_type)} {r.score:.3f} "
            f"seen {r.detections}x since {_ts(r.created_at)}{resolved}"
        )


@blocklist_app.command("expire")
def expire(ctx: typer.Context) -> None:
    """Lift blocks whose TTL has passed (writes unblock entries for every operator)."""
    store = _store(ctx)
    try:
        entries = store.expire()
    finally:
        store.close()
    typer.echo(
        f"{len(entries)} blocks expired"
        + (f" (versions {entries[0].version}..{entries[-1].version})" if entries else "")
        + "; operators get the unblocks with the next distribution round (simguard serve, the streaming "
        "job, or simguard blocklist publish)"
    )


@blocklist_app.command("publish")
def publish(ctx: typer.Context) -> None:
    """One distribution round: expire, publish to the Kafka topics, deliver due webhooks."""
    from streaming.blocklist.sink import BlocklistSink

    sink = BlocklistSink.from_settings(settings_from(ctx))
    try:
        report = sink.distribute()
        head = sink.store.head_version()
        # what each operator's topic holds now, whoever sent it (the streaming job publishes too)
        on_topics = (
            {op: sink.kafka.cursor(op) for op in sink.kafka.operators} if sink.kafka is not None else {}
        )
    finally:
        sink.close()
    if not on_topics:
        kafka = "kafka not configured"
    elif all(v >= head for v in on_topics.values()):
        kafka = (f"kafka records sent now {sum(report.kafka.values())}, every operator's topic holds "
                 f"the blocklist up to version {head}")
    else:
        kafka = (f"kafka records sent now {sum(report.kafka.values())}, topics behind version {head}: "
                 + ", ".join(f"{op} at {v}" for op, v in on_topics.items() if v < head))
    typer.echo(
        f"expired {len(report.expired)}; {kafka}; "
        f"webhooks delivered {report.webhooks.total_delivered}, retrying {sum(report.webhooks.retrying.values())}, "
        f"failed {sum(report.webhooks.failed.values())}"
    )
    for line in report.errors:
        typer.echo(f"error: {line}", err=True)
    if report.errors:
        raise typer.Exit(1)


@blocklist_app.command("load-businesses")
def load_businesses(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="CSV or Parquet with an a_number (or number) column."),
) -> None:
    """Make the registered-business allowlist exactly the numbers in PATH; lift their blocks."""
    from streaming.blocklist.numbers_file import read_numbers

    numbers = read_numbers(path)
    store = _store(ctx)
    try:
        sync = store.sync_registered_businesses(numbers, source=str(path))
    finally:
        store.close()
    typer.echo(
        f"registered businesses: {len(set(numbers))} numbers, {sync.added} added, {sync.removed} removed, "
        f"{len(sync.entries)} blocks lifted"
    )


@blocklist_app.command("redeliver")
def redeliver(
    ctx: typer.Context, operator: str = typer.Option(..., "--operator", help="Operator whose failed webhooks to retry.")
) -> None:
    """Put an operator's failed webhook deliveries back in the queue (after fixing its endpoint)."""
    from streaming.blocklist.publish_webhook import redeliver_failed

    store = _store(ctx)
    try:
        n = redeliver_failed(store, operator)
    finally:
        store.close()
    typer.echo(f"{n} deliveries to {operator} queued again")


@blocklist_app.command("audit")
def audit(ctx: typer.Context) -> None:
    """Per model version: blocks issued, overturned by analysts, lifted for the allowlist, expired; reviews."""
    store = _store(ctx)
    try:
        rows = store.model_audit()
    finally:
        store.close()
    for line in _log_warnings(ctx, None):
        typer.echo(f"WARNING: {_plain(line)}", err=True)
    if not rows:
        typer.echo("no model decisions yet")
    for r in rows:
        typer.echo(
            f"{_plain(r['model_name'] or '(unnamed model)')} v{_plain(r['model_version'])}: blocked {r['blocked']}, "
            f"overturned {r['overturned']}, lifted for the allowlist {r['lifted_for_allowlist']}, "
            f"expired {r['expired']}; reviews open {r['reviews_open']}, confirmed {r['reviews_confirmed']}, "
            f"overturned {r['reviews_overturned']}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(blocklist_app, name="blocklist")
