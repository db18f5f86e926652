"""``simguard simulate`` (synthetic CDRs with ground truth) and ``simguard replay`` (CDR files
into Kafka in event-time order). Thin: the work is in :mod:`pipeline.simulate`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional, cast

import typer

from pipeline.cli import settings_from

if TYPE_CHECKING:  # rich is imported when a command runs, to keep --help fast
    from rich.progress import Progress


def _progress() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


@contextmanager
def _last_days(source: Path, last_days: Optional[int]) -> Iterator[Path]:
    """``source``, or a temporary folder that links only its last ``last_days`` day folders."""
    if last_days is None:
        yield source
        return
    import tempfile

    from pipeline.report import day_files

    folders = sorted({p.parent for p in day_files(source, last_days=last_days)})
    with tempfile.TemporaryDirectory(prefix="simguard-replay-") as tmp:
        (Path(tmp) / "cdrs").mkdir()
        for folder in folders:
            (Path(tmp) / "cdrs" / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
        yield Path(tmp)


def _replay(
    ctx: typer.Context, source: Path, *, topic: str, rate: Optional[float], shift_to_now: bool,
    last_days: Optional[int] = None, speed: Optional[float] = None, duration_s: Optional[float] = None,
    start_at: Optional[dt.time] = None,
) -> int:
    with _last_days(source, last_days) as folder:
        return _replay_folder(ctx, folder, topic=topic, rate=rate, shift_to_now=shift_to_now, speed=speed,
                              duration_s=duration_s, start_at=start_at)


def _replay_folder(
    ctx: typer.Context, source: Path, *, topic: str, rate: Optional[float], shift_to_now: bool,
    speed: Optional[float] = None, duration_s: Optional[float] = None, start_at: Optional[dt.time] = None,
) -> int:
    from pipeline.simulate import count_records, replay_to_kafka

    settings = settings_from(ctx)
    total = count_records(source)
    if shift_to_now:
        pace = f"{speed:g}x real time" if speed else (f"about {rate:g} CDRs/s" if rate else "real time")
        limit = f", for {duration_s:g} s" if duration_s else ""
        frm = f", from {start_at:%H:%M:%S} UTC of the first day" if start_at else ""
        typer.echo(f"live replay: event time = wall time from now, at {pace}{frm}{limit}", err=True)
    with _progress() as progress:
        task = progress.add_task(f"replay to {topic}", total=total)

        def advance(sent: int, _total: int) -> None:
            progress.update(task, completed=sent)

        sent = replay_to_kafka(
            source,
            topic=topic,
            producer_options=settings.kafka.client_options(),
            rate=rate,
            shift_to=dt.datetime.now(dt.UTC) if shift_to_now else None,
            speed=speed,
            duration_s=duration_s,
            start_at=start_at,
            progress=advance,
        )
    return sent


def _time_of_day(text: Optional[str]) -> Optional[dt.time]:
    if text is None:
        return None
    if text == "now":
        return dt.datetime.now(dt.UTC).time()
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not HH:MM (UTC) or 'now'", param_hint="--start-at") from None


def simulate_command(
    ctx: typer.Context,
    subscribers: int = typer.Option(..., "--subscribers", min=200, help="SIMs in the simulated base."),
    days: int = typer.Option(1, "--days", min=1, help="Days to simulate (UTC days from network.start_date)."),
    seed: int = typer.Option(1, "--seed", help="Random seed: the same seed gives byte-identical output."),
    out: Path = typer.Option(..., "--out", help="Output folder; a previous simulation in it is replaced."),
    config_sim: Optional[Path] = typer.Option(
        None, "--config-sim", help="YAML merged over configs/simulator.yaml (only the keys it changes)."
    ),
    to_kafka: Optional[str] = typer.Option(
        None, "--to-kafka", metavar="TOPIC", help="Then replay the CDRs into this Kafka topic."
    ),
    rate: Optional[float] = typer.Option(
        None, "--rate", min=0.001, help="Replay speed in records/s (default: as fast as possible)."
    ),
    shift_to_now: bool = typer.Option(
        False, "--shift-to-now", help="Replay live: the first record starts now, each sent when its call has ended."
    ),
) -> None:
    """Generate CDRs with ground-truth labels (spam SIMs, SIM boxes, Wangiri, spoofed calls)."""
    from rich.console import Console
    from rich.table import Table

    from pipeline.simulate import load_simulator_config, simulate

    if (rate is not None or shift_to_now) and to_kafka is None:
        raise typer.BadParameter("--rate and --shift-to-now only apply with --to-kafka", param_hint="--to-kafka")
    config = load_simulator_config(config_sim)
    with _progress() as progress:
        task = progress.add_task("simulating", total=None)

        def advance(description: str, completed: int, total: int) -> None:
            progress.update(task, description=description, completed=completed, total=total)

        result = simulate(out, subscribers=subscribers, days=days, seed=seed, config=config, progress=advance)

    console = Console(highlight=False)
    table = Table(title=f"simulation in {result.out_dir}", show_edge=False)
    for column in ("population", "entities", "with records", "records"):
        table.add_column(column, justify="left" if column == "population" else "right")
    for name, counts in result.manifest["populations"].items():
        table.add_row(name, str(counts["entities"]), str(counts["with_records"]), str(counts["records"]))
    console.print(table)
    spoofed = result.manifest["rows"]["spoofed"]
    console.print(
        f"{result.rows} CDRs over {days} day(s), {sum(spoofed.values())} spoofed calls; "
        f"labels in {result.out_dir / 'labels'}"
    )
    if to_kafka is not None:
        sent = _replay(ctx, result.out_dir, topic=to_kafka, rate=rate, shift_to_now=shift_to_now)
        console.print(f"replayed {sent} CDRs into Kafka topic {to_kafka}")


def replay_command(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A simulation folder (or any folder of cdrs/day=*/part-*.parquet)."),
    topic: Optional[str] = typer.Option(None, "--topic", help="Kafka topic (default: kafka.topics.cdrs)."),
    rate: Optional[float] = typer.Option(
        None, "--rate", min=0.001,
        help="Records/s (default: as fast as possible; with --shift-to-now, on average, event time sped up to match).",
    ),
    shift_to_now: bool = typer.Option(
        False, "--shift-to-now",
        help="Live: event time runs with the wall clock from now, each CDR sent once its call has ended "
        "(real time; --speed or --rate to go faster).",
    ),
    speed: Optional[float] = typer.Option(
        None, "--speed", min=0.001, help="With --shift-to-now: event seconds per wall second (default 1)."
    ),
    duration_s: Optional[float] = typer.Option(
        None, "--duration", min=0.001, help="With --shift-to-now: stop after this many seconds."
    ),
    start_at: Optional[str] = typer.Option(
        None, "--start-at", metavar="HH:MM|now",
        help="With --shift-to-now: start at this UTC time of day of the first day ('now': the current one, "
        "so timestamps move by whole days and times of day stay true).",
    ),
    last_days: Optional[int] = typer.Option(
        None, "--last-days", min=1, help="Only the last N days (e.g. the test day the models never saw)."
    ),
) -> None:
    """Replay CDR Parquet files into Kafka in event-time order, keyed by a_number."""
    if (speed is not None or duration_s is not None or start_at is not None) and not shift_to_now:
        raise typer.BadParameter("--speed, --duration and --start-at only apply with --shift-to-now",
                                 param_hint="--shift-to-now")
    topic = topic or settings_from(ctx).kafka.topics.cdrs
    sent = _replay(ctx, source, topic=topic, rate=rate, shift_to_now=shift_to_now, last_days=last_days,
                   speed=speed, duration_s=duration_s, start_at=_time_of_day(start_at))
    typer.echo(f"replayed {sent} CDRs into Kafka topic {topic}")


def live_history_command(
    source: Path = typer.Argument(..., help="The simulation folder the live replay sends."),
    start_at: str = typer.Option(
        ..., "--start-at", metavar="HH:MM[:SS]|now", help="The --start-at the replay is given (UTC time of day)."
    ),
    out: Path = typer.Option(..., "--out", help="A new folder for the history (canonical Parquet)."),
    days_before: int = typer.Option(1, "--days-before", min=0, help="Whole days before the replayed day to include."),
) -> None:
    """The history a live replay continues, for `simguard stream --warm-from`: the replayed day's
    records before --start-at and the day before's, moved so that --start-at is now (as
    `simguard replay --last-days 1 --shift-to-now --start-at` moves the rest)."""
    from pipeline.simulate.history import write_history

    at = cast(dt.time, _time_of_day(start_at))  # given, so not None
    written = write_history(source, start_at=at, now=dt.datetime.now(dt.UTC), out=out, days_before=days_before)
    typer.echo(f"history: {written['records']} CDRs from {written['first']:%Y-%m-%d %H:%M:%S} to "
               f"{written['last']:%Y-%m-%d %H:%M:%S} UTC in {out}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
    app.command("replay")(replay_command)
    app.command("live-history")(live_history_command)
