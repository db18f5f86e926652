"""The local set-up's broker, derived from settings (state under ``<home>/kafka``)."""

from __future__ import annotations

from pathlib import Path

from pipeline.broker import LocalBroker
from pipeline.config import PROJECT_ROOT, Settings


def resolve(path: Path) -> Path:
    """Relative paths in the config are relative to the working directory, as for any CLI."""
    return path.expanduser().resolve()


def local_broker(settings: Settings) -> LocalBroker:
    jars = settings.jars_dir
    if not jars.is_absolute() and not resolve(jars).exists():
        # commands run from elsewhere still find the jars `make setup` fetched in the checkout
        jars = PROJECT_ROOT / jars
    return LocalBroker(
        home=settings.home_abs / "kafka",
        jars_dir=resolve(jars),
        port=settings.local_broker.port,
        controller_port=settings.local_broker.controller_port,
        settings=settings.local_broker,
    )
