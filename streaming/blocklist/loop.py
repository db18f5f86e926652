"""A background distribution loop: the blocklist's Kafka topics, webhooks and expiry, run beside
whatever decides (the HTTP service, the streaming job), never inside it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("simguard.blocklist")


class DistributionLoop:
    """A background thread that runs ``step`` every ``interval_s`` seconds, or at once when
    :meth:`wake` is called (an analyst's unblock should not wait for the next tick)."""

    def __init__(self, step: Callable[[], Any], *, interval_s: float) -> None:
        self.step = step
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="blocklist-distribution", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("blocklist distribution round failed; retrying next round")
            self._wake.wait(self.interval_s)
            self._wake.clear()
