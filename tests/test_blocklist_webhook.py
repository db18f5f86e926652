"""Webhook outbox against real local HTTP receivers that are down (not listening, then 503) for
part of the run and then come back: every entry arrives, in version order, with its
idempotency key. Simulated clocks drive the backoff, so nothing sleeps."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from factories import fixed_policy

from pipeline.broker import free_port
from streaming.blocklist.publish_webhook import WebhookDispatcher, backoff_s, delivery_counts, redeliver_failed
from streaming.blocklist.settings import OperatorSettings, WebhookSettings
from streaming.blocklist.sink import BlocklistSink
from streaming.blocklist.store import BlocklistStore
from streaming.policy import StaticAllowlist, decide_sims

NOW = dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC)
T = pd.Timestamp("2026-11-02T06:00", tz="UTC")
SETTINGS = WebhookSettings(backoff_base_s=2, backoff_max_s=60, max_attempts=50, timeout_s=2)


class Receiver:
    """An operator's endpoint: records every POST; answers 200, or 503 while ``failing``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[dict[str, Any]] = []
        self.failing = False
        #: each POST takes this long to answer (a slow operator)
        self.delay_s = 0.0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                if receiver.failing:
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.end_headers()
                    return
                receiver.received.append(
                    {
                        "key": self.headers.get("Idempotency-Key"),
                        "auth": self.headers.get("Authorization"),
                        "body": json.loads(body),
                    }
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    made = {op: Receiver(free_port()) for op in ("viettel", "vinaphone")}
    yield made
    for r in made.values():
        r.stop()


def block(store: BlocklistStore, numbers: list[str], *, batch: str, now: dt.datetime) -> list[int]:
    frame = pd.DataFrame(
        {
            "number": numbers,
            "fraud_type": "spam_robocall",
            "score": 0.99,
            "operator": "viettel",
            "reasons": [["many short calls"]] * len(numbers),
            "model_name": "simguard-spam-sim",
            "model_version": "7",
            "window_end": T,
        }
    )
    decisions = decide_sims(frame, policy=fixed_policy(), allowlist=StaticAllowlist(), batch_key=batch)
    return [e.version for e in store.apply_decisions(decisions, now=now).entries]


def make(tmp_path: Path, receivers: dict[str, Receiver]) -> tuple[BlocklistStore, WebhookDispatcher]:
    operators = {
        op: OperatorSettings(webhook_url=r.url, webhook_token=f"token-{op}") for op, r in receivers.items()
    } | {"mobifone": OperatorSettings()}  # no webhook: gets no outbox rows
    store = BlocklistStore.open(f"sqlite:///{tmp_path / 'bl.db'}", webhook_operators=list(receivers))
    return store, WebhookDispatcher(store, operators=operators, settings=SETTINGS, rng=random.Random(1))


def test_an_operator_that_was_down_receives_everything_once_back(tmp_path: Path, receivers) -> None:
    viettel, vinaphone = receivers["viettel"], receivers["vinaphone"]
    vinaphone.start()  # up all along; viettel's port has no listener yet
    store, hooks = make(tmp_path, receivers)
    try:
        versions = block(store, [f"+8496100000{i}" for i in range(5)], batch="s:1", now=NOW)
        versions += [
            e.version
            for e in store.unblock("+84961000002", analyst="lan", reason="appeal", request_id="r1", now=NOW).entries
        ]
        assert versions == [1, 2, 3, 4, 5, 6]

        # round 1: viettel refuses connections; vinaphone takes everything meanwhile
        r1 = hooks.deliver_pending(NOW)
        assert r1.retrying == {"viettel": 1} and r1.delivered == {"vinaphone": 6}
        assert [m["key"] for m in vinaphone.received] == ["1", "2", "3", "4", "5", "6"]
        # still in backoff at the same instant: not even one request
        assert hooks.deliver_pending(NOW).retrying == {}

        # viettel answers 503 for a while: backoff grows, order holds (only the head is tried)
        viettel.failing = True
        viettel.start()
        clock = NOW
        for _ in range(4):
            clock += dt.timedelta(seconds=SETTINGS.backoff_max_s)
            assert hooks.deliver_pending(clock).retrying == {"viettel": 1}
        assert viettel.received == []
        assert delivery_counts(store, "viettel") == {"pending": 6}

        # back: everything, in version order, each with its idempotency key and the token
        viettel.failing = False
        clock += dt.timedelta(seconds=SETTINGS.backoff_max_s)
        assert hooks.deliver_pending(clock).delivered == {"viettel": 6}
        assert [m["key"] for m in viettel.received] == ["1", "2", "3", "4", "5", "6"]
        assert {m["auth"] for m in viettel.received} == {"Bearer token-viettel"}
        bodies = [m["body"] for m in viettel.received]
        assert [b["version"] for b in bodies] == [1, 2, 3, 4, 5, 6]
        assert bodies[5]["action"] == "unblock" and bodies[5]["lifts_version"] == 3
        assert bodies[5]["note"] == "appeal" and bodies[0]["reasons"] == ["many short calls"]
        assert all(b["operator"] == "viettel" for b in bodies)
        assert delivery_counts(store, "viettel") == {"delivered": 6}
        assert hooks.deliver_pending(clock + dt.timedelta(hours=1)).total_delivered == 0
        assert len(vinaphone.received) == 6  # nobody got anything twice
    finally:
        hooks.close()
        store.close()


def test_rows_that_use_up_their_attempts_fail_and_can_be_redelivered(tmp_path: Path, receivers) -> None:
    store, _ = make(tmp_path, receivers)
    operators = {"viettel": OperatorSettings(webhook_url=receivers["viettel"].url)}
    hooks = WebhookDispatcher(
        store, operators=operators, settings=SETTINGS.model_copy(update={"max_attempts": 2}), rng=random.Random(2)
    )
    try:
        block(store, ["+84961000001", "+84961000002"], batch="s:1", now=NOW)
        clock = NOW
        for _ in range(4):
            hooks.deliver_pending(clock)
            clock += dt.timedelta(hours=1)
        assert delivery_counts(store, "viettel") == {"failed": 2}
        receivers["viettel"].start()
        assert hooks.deliver_pending(clock).total_delivered == 0  # failed rows stay failed ...
        assert redeliver_failed(store, "viettel", now=clock) == 2  # ... until an operator fixes its side
        assert hooks.deliver_pending(clock).delivered == {"viettel": 2}
        assert [m["key"] for m in receivers["viettel"].received] == ["1", "2"]
    finally:
        hooks.close()
        store.close()


def test_expiry_reaches_the_operator_through_the_sinks_distribution_round(tmp_path: Path, receivers) -> None:
    receivers["viettel"].start()
    store, hooks = make(tmp_path, receivers)
    sink = BlocklistSink(store=store, policy=fixed_policy(), webhooks=hooks)
    try:
        block(store, ["+84961000001"], batch="s:1", now=NOW)
        assert sink.distribute(NOW).webhooks.delivered == {"viettel": 1}
        lapse = NOW + dt.timedelta(hours=fixed_policy().spam_robocall.ttl_hours)
        report = sink.distribute(lapse)
        assert [e.version for e in report.expired] == [2] and report.webhooks.delivered == {"viettel": 1}
        assert report.errors == []
        last = receivers["viettel"].received[-1]
        assert last["key"] == "2" and last["body"]["action"] == "unblock" and last["body"]["lifts_version"] == 1
        assert last["body"]["decided_by"] == "system" and "reached its TTL" in last["body"]["note"]
    finally:
        sink.close()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(3)
    delays = [backoff_s(n, settings=SETTINGS, rng=rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        full = min(SETTINGS.backoff_max_s, SETTINGS.backoff_base_s * 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert max(delays) <= SETTINGS.backoff_max_s
    assert len({round(d, 6) for d in delays[-4:]}) == 4  # capped, yet not all equal: jitter


def test_a_round_longer_than_the_lease_is_not_delivered_twice_in_parallel(tmp_path: Path, receivers) -> None:
    """``serve`` and ``stream`` both run a dispatcher: while one is in a round that outlasts the
    lease (a slow operator), the other must not take the lease and send the same rows."""
    hook = receivers["viettel"]
    hook.start()
    hook.delay_s = 0.15  # 8 POSTs: 1.2 s, longer than the lease
    settings = WebhookSettings(timeout_s=0.3, lease_s=1.0, batch_size=100)
    operators = {"viettel": OperatorSettings(webhook_url=hook.url)}
    store = BlocklistStore.open(f"sqlite:///{tmp_path / 'bl.db'}", webhook_operators=["viettel"])
    versions = block(store, [f"+8496100000{i}" for i in range(8)], batch="s:1", now=NOW)
    first, second = (WebhookDispatcher(store, operators=operators, settings=settings) for _ in range(2))
    try:
        busy = threading.Thread(target=first.deliver_pending, kwargs={"now": NOW})
        busy.start()
        time.sleep(0.1)  # the first holds the lease now
        while busy.is_alive():  # the other process's loop, ticking fast
            second.deliver_pending(now=NOW)
            time.sleep(0.05)
        busy.join()
        second.deliver_pending(now=NOW)
        keys = [int(m["key"]) for m in hook.received]
        assert keys == versions  # each once, in version order
        assert delivery_counts(store, "viettel") == {"delivered": 8}
    finally:
        first.close()
        second.close()
        store.close()
