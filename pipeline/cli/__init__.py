"""The ``simguard`` command group: one module per noun, each a thin layer over library code.

Every ``SimGuardError`` raised below becomes one line on stderr and a non-zero exit. Once the
settings are loaded, their secrets are masked in that line and in every log record.
"""

from __future__ import annotations

import importlib
import os
import sys

# LightGBM and scikit-learn run OpenMP (libgomp) threads, which by default spin while they wait
# at a barrier; on a few cores shared with the Spark JVM and its workers a spinning thread takes
# the core the others need. Read once, when libgomp loads: set before anything imports it. The
# Spark workers get it from ``spark.executorEnv.OMP_WAIT_POLICY`` (configs/default.yaml).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
from pathlib import Path
from typing import Optional

import typer

from features.errors import SimGuardError
from features.redact import Redactor, install_log_redaction

app = typer.Typer(
    name="simguard",
    help="SIMGuard: find junk SIMs, SIM-box bypass, Wangiri and spoofed calls in CDRs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: command modules under pipeline/cli; each exposes ``register(app)``
COMMAND_MODULES = (
    "doctor",
    "kafka",
    "ingest",
    "simulate",
    "features",
    "train",
    "evaluate",
    "score",
    "serve",
    "blocklist",
    "stream",
    "report",
    "console",
    "audit",
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        "-c",
        envvar="SIMGUARD_CONFIG",
        help="YAML config file (default: configs/default.yaml).",
    ),
) -> None:
    ctx.obj = {"config_path": config}


#: masks the loaded settings' secrets in error lines (empty until settings are loaded)
_redact = Redactor([])


def settings_from(ctx: typer.Context):
    """Load (once) and return the validated settings for this invocation."""
    global _redact
    from pipeline.config import load_settings

    obj = ctx.find_root().obj
    if "settings" not in obj:
        settings = load_settings(obj.get("config_path"))
        _redact = settings.redactor()
        install_log_redaction(_redact)
        obj["settings"] = settings
    return obj["settings"]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"pipeline.cli.{name}").register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="simguard")
    except SimGuardError as exc:
        typer.echo(f"error: {_redact(exc)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
