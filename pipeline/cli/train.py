"""``simguard train``: features, both models, MLflow logging and registration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli import settings_from

if TYPE_CHECKING:
    from rich.console import Console


@contextmanager
def stage_progress(console: Console, title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the elapsed time; the yielded callback names the current stage."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(title, total=None)

        def step(message: str) -> None:
            console.log(message)
            bar.update(task, description=message)

        yield step


def fmt(value: Any, *, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.2f}%" if pct else f"{value:.4f}"
    return str(value)


def train(
    ctx: typer.Context,
    cdrs: Annotated[Path, typer.Option("--cdrs", help="Folder of canonical CDR Parquet files.")],
    labels: Annotated[Path, typer.Option("--labels", help="Labels folder (sims.parquet, calls.parquet).")],
    seed: Annotated[int | None, typer.Option("--seed", help="Training seed (default: models.seed).")] = None,
    extra_labels: Annotated[
        Path | None,
        typer.Option("--extra-labels", help="Analysts' labels (`simguard labels export`) added to the training rows."),
    ] = None,
) -> None:
    """Train the spam-SIM and spoof-call models, log them to MLflow, register, move the champion."""
    from rich.console import Console
    from rich.table import Table

    from models.registry import registry_errors
    from pipeline.modeling import train as run_train
    from pipeline.spark import build_spark

    settings = settings_from(ctx)
    console = Console(stderr=True, highlight=False)
    with stage_progress(console, "training") as step:
        step("starting Spark")
        spark = build_spark(settings.spark, jars_dir=settings.jars_dir)
        with registry_errors(settings.mlflow_tracking_uri):
            outcomes = run_train(
                spark, settings, cdrs=cdrs, labels=labels, extra_labels=extra_labels, seed=seed, progress=step
            )

    table = Table(title="simguard train: test split (last day), thresholds chosen on validation")
    for col in ("model", "version", "champion", "recall", "FPR", "target FPR", "PR-AUC", "rules recall",
                "rules FPR", "gain"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for o in outcomes:
        s = o.summary
        champion = f"v{o.champion_version}" + (" new" if o.promoted else " kept")
        table.add_row(
            o.task, str(o.version), champion, fmt(s["recall_at_fpr"], pct=True), fmt(s["fpr"], pct=True),
            fmt(s["target_fpr"], pct=True), fmt(s["pr_auc"]), fmt(s["baseline_recall_at_fpr"], pct=True),
            fmt(s["baseline_fpr"], pct=True), fmt(s["recall_gain_at_fpr"], pct=True),
        )
    # wide enough for the table when stdout is not a terminal (CI logs, pipes)
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=120)
    out.print(table)
    for o in outcomes:
        by_type = ", ".join(f"{k} {fmt(v, pct=True)}" for k, v in o.summary["recall_by_population"].items())
        typer.echo(f"{o.registered_name} v{o.version} recall by population: {by_type}")
    if extra_labels is not None:
        for o in outcomes:
            e = o.extra_labels
            typer.echo(
                f"{o.registered_name} v{o.version} trained with {e.used} analysts' labels "
                f"({e.relabelled} relabelled, {e.moved} moved from validation/test, {e.added} added)"
            )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
