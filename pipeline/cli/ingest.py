"""``simguard ingest``: an operator export -> canonical CDR Parquet and a dead letter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def mapping_file(value: Path) -> Path:
    """``value`` if it is a file, else the shipped mapping of that name (``djezzy_simbox``, from
    ``configs/mappings/`` in the installed package), so an install works from any folder."""
    if value.exists() or value.parent != Path(value.name).parent:
        return value
    from features.resources import config_file

    shipped = config_file("mappings", value.name if value.suffix else f"{value.name}.yaml")
    return shipped if shipped.is_file() else value


def ingest(
    mapping: Annotated[
        Path,
        typer.Option("--mapping", "-m", help="Mapping YAML, or the name of a shipped one (configs/mappings/)."),
    ],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="The operator's CSV or JSON-lines export.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: cdrs/, dead_letter/, ingest_summary.json.")],
    # defaults live in pipeline.ingest, imported lazily so that `simguard --help` stays fast
    max_age_days: Annotated[
        float | None,
        typer.Option("--max-age-days", min=0.001, help="Dead-letter records older than this (default 3650: archives)."),
    ] = None,
    max_future_s: Annotated[
        float | None,
        typer.Option("--max-future-s", min=0, help="Dead-letter records further ahead than this (default 86400)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the outputs of an earlier run in --out.")
    ] = False,
) -> None:
    """Map an export to the canonical CDR schema; every row is written or dead-lettered with a reason."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from pipeline.ingest import DEFAULT_MAX_AGE_DAYS, DEFAULT_MAX_FUTURE_S, run_ingest

    console = Console(highlight=False)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(f"ingesting {input_path.name}", total=None)
        summary = run_ingest(
            mapping_file(mapping),
            input_path,
            out,
            max_age_days=DEFAULT_MAX_AGE_DAYS if max_age_days is None else max_age_days,
            max_future_s=DEFAULT_MAX_FUTURE_S if max_future_s is None else max_future_s,
            overwrite=overwrite,
            progress=lambda rows: bar.update(task, description=f"ingesting {input_path.name}: {rows:,} rows"),
        )

    table = Table(title=f"ingest {input_path.name}", show_header=True)
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("in", f"{summary.rows_in:,}")
    table.add_row("valid", f"{summary.valid:,}")
    table.add_row("dead-lettered", f"{summary.dead_lettered:,}")
    for code, count in summary.dead_by_reason.items():
        table.add_row(f"  {code}", f"{count:,}")
    console.print(table)
    console.print(f"canonical CDRs: {out / 'cdrs'}", soft_wrap=True)
    console.print(f"dead letter:    {out / 'dead_letter' / 'dead_letter.jsonl'}", soft_wrap=True)
    console.print(f"summary:        {out / 'ingest_summary.json'}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
