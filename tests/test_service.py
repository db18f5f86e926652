"""The blocklist HTTP API, served by a real uvicorn on a free port: incremental sync per operator
token, 401/403, analyst unblock published to every operator, health and metrics, and the
background distribution loop."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pandas as pd
import pytest
from browser_helpers import serving
from factories import fixed_policy

from pipeline.broker import free_port
from streaming.blocklist.loop import DistributionLoop
from streaming.blocklist.publish_webhook import WebhookDispatcher, delivery_counts
from streaming.blocklist.service import create_app
from streaming.blocklist.settings import BlocklistSettings, OperatorSettings, ServiceSettings
from streaming.blocklist.sink import BlocklistSink
from streaming.blocklist.store import BlocklistStore
from streaming.policy import StaticAllowlist, decide_sims

# the wall clock: the server's own expiry round runs on it and must not lift these blocks
NOW = dt.datetime.now(dt.UTC)
T = pd.Timestamp(NOW) - pd.Timedelta(hours=1)
TOKENS = {"viettel": "tok-viettel", "vinaphone": "tok-vinaphone", "mobifone": "tok-mobifone"}
ANALYST = "tok-analyst-lan"


def settings(webhooks: dict[str, str] | None = None) -> BlocklistSettings:
    webhooks = webhooks or {}
    return BlocklistSettings(
        operators={
            op: OperatorSettings(api_token=TOKENS.get(op), webhook_url=webhooks.get(op))
            for op in ("viettel", "vinaphone", "mobifone", "vietnamobile")
        },
        analysts={"lan": ANALYST},
    )


def block(store: BlocklistStore, numbers: list[str], *, batch: str) -> None:
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
    store.apply_decisions(decisions, now=NOW)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}




@pytest.fixture
def api(db_url: str) -> Iterator[tuple[httpx.Client, BlocklistStore]]:
    store = BlocklistStore.open(db_url, webhook_operators=["viettel", "vinaphone"])
    app = create_app(store=store, blocklist=settings(), service=ServiceSettings(max_page=100))
    with serving(app) as base, httpx.Client(base_url=base) as client:
        yield client, store
    store.close()


def test_incremental_sync_pages_through_versions(api) -> None:
    client, store = api
    block(store, [f"+8496100000{i}" for i in range(5)], batch="s:1")
    seen: list[int] = []
    since = 0
    while True:
        page = client.get("/blocklist", params={"since": since, "limit": 2}, headers=auth(TOKENS["viettel"])).json()
        assert page["operator"] == "viettel" and page["head_version"] == 5
        seen += [e["version"] for e in page["entries"]]
        since = page["next_since"]
        if not page["more"]:
            break
    assert seen == [1, 2, 3, 4, 5]
    block(store, ["+84912345678"], batch="s:2")
    page = client.get("/blocklist", params={"since": since}, headers=auth(TOKENS["vinaphone"])).json()
    [entry] = page["entries"]
    assert entry["version"] == 6 and entry["number"] == "+84912345678"
    assert entry["enforce"] == "bar_outgoing_calls"  # VinaPhone's own subscriber
    assert entry["reasons"] == ["many short calls"] and entry["expires_at"].endswith("Z")
    assert client.get("/blocklist", params={"limit": 101}, headers=auth(TOKENS["viettel"])).status_code == 422


def test_tokens_401_and_403(api) -> None:
    client, _ = api
    assert client.get("/blocklist").status_code == 401
    assert client.get("/blocklist", headers=auth("not-a-token")).status_code == 401
    assert client.get("/blocklist", headers={"Authorization": "Basic dml0dGVsOng="}).status_code == 401
    # vietnamobile has no token configured: nobody can read as it
    assert (
        client.get("/blocklist", params={"operator": "vietnamobile"}, headers=auth(TOKENS["viettel"])).status_code
        == 403
    )
    assert client.get("/blocklist", params={"operator": "mobifone"}, headers=auth(TOKENS["viettel"])).status_code == 403
    assert client.get("/blocklist", params={"operator": "viettel"}, headers=auth(TOKENS["viettel"])).status_code == 200
    assert client.get("/blocklist", headers=auth(ANALYST)).status_code == 403
    body = {"number": "+84961000001", "reason": "appeal", "request_id": "r1"}
    assert client.post("/unblock", json=body).status_code == 401
    assert client.post("/unblock", json=body, headers=auth(TOKENS["viettel"])).status_code == 403


def test_analyst_unblock_is_published_to_every_operator(api) -> None:
    client, store = api
    block(store, ["+84961000001"], batch="s:1")
    body = {"number": "+84961000001", "reason": "subscriber appeal #42: delivery driver", "request_id": "appeal-42"}
    res = client.post("/unblock", json=body, headers=auth(ANALYST))
    assert res.status_code == 200
    out = res.json()
    [entry] = out["entries"]
    assert entry["action"] == "unblock" and entry["decided_by"] == "analyst" and entry["lifts_version"] == 1
    assert out["cleared"] is True and out["published_to"] == ["viettel", "vinaphone", "mobifone", "vietnamobile"]
    for op, token in TOKENS.items():
        page = client.get("/blocklist", params={"since": 1}, headers=auth(token)).json()
        assert [(e["version"], e["action"], e["operator"]) for e in page["entries"]] == [(2, "unblock", op)]
    # the webhook outbox has the unblock for each operator with a webhook
    for op in ("viettel", "vinaphone"):
        assert delivery_counts(store, op) == {"pending": 2}
    again = client.post("/unblock", json=body, headers=auth(ANALYST)).json()
    assert again["replayed"] is True and [e["version"] for e in again["entries"]] == [2]
    assert store.head_version() == 2
    clash = client.post("/unblock", json={**body, "number": "+84961000002"}, headers=auth(ANALYST))
    assert clash.status_code == 409 and "already used" in clash.json()["detail"]


def test_healthz_and_metrics(api) -> None:
    client, store = api
    block(store, ["+84961000001"], batch="s:1")
    assert client.get("/healthz").json() == {"status": "ok", "head_version": 1}
    text = client.get("/metrics").text
    assert "simguard_blocklist_head_version 1.0" in text
    assert "simguard_blocklist_active_blocks 1.0" in text
    assert "simguard_blocklist_pending_deliveries 2.0" in text
    assert 'simguard_blocklist_entries_total{action="block",decided_by="model"}' in text


def test_real_server_distribution_loop_delivers_an_unblock_at_once(db_url: str) -> None:
    """The loop running in the background: an analyst's unblock reaches the operator's webhook
    without waiting for the next tick."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    bl = settings({"viettel": f"http://127.0.0.1:{hook.server_address[1]}/in"})
    store = BlocklistStore.open(db_url, webhook_operators=["viettel"])
    sink = BlocklistSink(
        store=store,
        policy=fixed_policy(),
        webhooks=WebhookDispatcher(store, operators=bl.operators, settings=bl.webhook),
    )
    loop = DistributionLoop(sink.distribute, interval_s=30)  # a tick far away: only wake() can be fast
    try:
        with serving(create_app(store=store, blocklist=bl, loop=loop)) as base:
            assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
            block(store, ["+84961000001"], batch="s:1")
            res = httpx.post(
                f"{base}/unblock",
                json={"number": "+84961000001", "reason": "appeal", "request_id": "r-7"},
                headers=auth(ANALYST),
            )
            assert res.status_code == 200
            deadline = time.monotonic() + 10
            while len(received) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [(m["version"], m["action"]) for m in received] == [(1, "block"), (2, "unblock")]
    finally:
        hook.shutdown()
        hook.server_close()
        sink.close()
