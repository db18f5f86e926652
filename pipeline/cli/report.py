"""``simguard report``: what a stream run did, against the simulator's ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli import settings_from


def report(
    ctx: typer.Context,
    labels: Annotated[Path, typer.Option("--labels", help="The simulation's labels folder (ground truth).")],
    cdrs: Annotated[Path, typer.Option("--cdrs", help="The simulation (or its cdrs folder) whose CDRs were streamed.")],
    last_days: Annotated[
        Optional[int], typer.Option("--last-days", min=1, help="Only its last N days were streamed.")
    ] = None,
    csv_dir: Annotated[
        Optional[Path], typer.Option("--csv-dir", help="Folder of blocklist CSV exports to list.")
    ] = None,
    env_file: Annotated[
        Optional[Path], typer.Option("--env-file", help="Shell file with this run's SIMGUARD_* settings, for the "
                                     "commands the report suggests.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
) -> None:
    """Summarise a stream run: CDRs processed and dead-lettered, blocks and reviews by fraud type,
    precision, recall and detection delay against the labels, where the blocklists are."""
    from pipeline.report import build_report, format_report, report_json

    settings = settings_from(ctx)
    result = build_report(settings, labels=labels, cdrs=cdrs, last_days=last_days, csv_dir=csv_dir)
    if as_json:
        typer.echo(report_json(result))
        return
    typer.echo(format_report(result, env_file=env_file))


def register(app: typer.Typer) -> None:
    app.command("report")(report)
