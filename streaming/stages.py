"""Wall seconds per stage of one micro-batch, for its batch record."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Stages:
    """Wall seconds per stage of one micro-batch, for its batch record (stages run beside the
    batch's thread overlap the others)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 3)
        self._last = now

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self.laps[name] = round(time.monotonic() - start, 3)

        return run
