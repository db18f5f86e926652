"""The blocklist HTTP API (``simguard serve``): incremental sync for operators, unblock for
analysts, health and metrics.

- ``GET /blocklist?since=<version>&limit=N``: entries above ``since``, oldest first, as the
  calling operator receives them (``enforce`` depends on who asks). The caller continues with
  ``since=next_since`` until ``more`` is false. Each operator has its own token
  (``Authorization: Bearer``): no or an unknown token is 401; asking for another operator's list
  with ``operator=`` is 403.
- ``POST /unblock`` (analyst tokens only): lift a number's blocks, clear it, overturn its open
  reviews; the unblock entries go to every operator through every channel. ``request_id`` makes
  a retried request harmless.
- ``GET /healthz``: the database answers; ``GET /metrics``: Prometheus text (the process's default
  registry, which the streaming job's metrics share, plus gauges read from the store).

Tokens are compared in constant time, all of them every time, so the answer's timing says nothing
about which token came close.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from features.errors import SimGuardError
from features.numbering import NumberingPlan
from streaming.blocklist.payload import entry_dict, entry_payload
from streaming.blocklist.settings import BlocklistSettings, ServiceSettings
from streaming.blocklist.store import BlocklistStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    kind: Literal["operator", "analyst"]
    name: str


class UnblockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=2, max_length=32)
    reason: str = Field(min_length=1, max_length=2000)
    #: the analyst's id for this request: repeating it repeats nothing
    request_id: str = Field(min_length=1, max_length=128)
    #: one scope (``all``, ``trunk:international_gateway``); ``None``: every active scope
    scope: str | None = Field(None, max_length=64)


class _StoreGauges:
    """Gauges read from the database at scrape time."""

    def __init__(self, store: BlocklistStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self.store.counts()
        except Exception:  # a scrape must not fail because the database blinked
            log.warning("metrics: cannot read blocklist counts", exc_info=True)
            return
        help_text = {
            "head_version": "Latest blocklist version",
            "active_blocks": "Blocks in force",
            "open_reviews": "Flags waiting for an analyst",
            "pending_deliveries": "Webhook deliveries not yet acknowledged",
            "failed_deliveries": "Webhook deliveries that used up their attempts",
        }
        for key, value in counts.items():
            yield GaugeMetricFamily(f"simguard_blocklist_{key}", help_text[key], value=value)


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


def create_app(
    *,
    store: BlocklistStore,
    blocklist: BlocklistSettings,
    service: ServiceSettings | None = None,
    plan: NumberingPlan | None = None,
    loop: DistributionLoop | None = None,
    registries: Sequence[CollectorRegistry] = (),
) -> FastAPI:
    """The API over ``store``. ``loop`` (optional) runs for the app's lifetime; ``registries``
    are exposed on ``/metrics`` besides the default registry (e.g. the streaming job's own)."""
    service = service or ServiceSettings()
    plan = plan or store.plan
    operators = blocklist.for_operators(plan.operators)
    tokens: list[tuple[Caller, bytes]] = [
        (Caller("operator", op), cfg.api_token.get_secret_value().encode())
        for op, cfg in operators.items()
        if cfg.api_token is not None
    ] + [(Caller("analyst", name), token.get_secret_value().encode()) for name, token in blocklist.analysts.items()]
    if not tokens:
        log.warning("no API tokens configured: every /blocklist and /unblock request will get 401")

    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(_StoreGauges(store))  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        if loop is not None:
            loop.start()
        try:
            yield
        finally:
            if loop is not None:
                loop.stop()

    app = FastAPI(title="SIMGuard blocklist", version="1", lifespan=lifespan)
    bearer = HTTPBearer(auto_error=False)

    # dependencies as default values, not ``Annotated``: with postponed annotations FastAPI would
    # look the closure's names up in the module and miss them
    def caller(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
        if credentials is None or not credentials.credentials:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        given = credentials.credentials.encode()
        found: Caller | None = None
        for who, secret in tokens:
            # no early exit: every request costs the same whichever token matched
            if hmac.compare_digest(given, secret):
                found = who
        if found is None:
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        return found

    @app.exception_handler(SimGuardError)
    async def _simguard_error(_request: Request, exc: SimGuardError) -> Response:
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.get("/healthz")
    def healthz() -> Response:
        from fastapi.responses import JSONResponse

        try:
            head = store.head_version()
        except Exception as exc:
            return JSONResponse({"status": "down", "detail": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "head_version": head})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body = b"".join(generate_latest(r) for r in (REGISTRY, gauges, *registries))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/blocklist")
    def blocklist_since(
        who: Caller = Depends(caller),
        since: int = Query(0, ge=0, description="last version the caller holds"),
        limit: int = Query(1000, ge=1, le=service.max_page),
        operator: str | None = Query(None, description="must be the caller's own operator"),
    ) -> dict[str, Any]:
        if who.kind != "operator":
            raise HTTPException(403, "only operator tokens read blocklists")
        if operator is not None and operator != who.name:
            raise HTTPException(403, f"this token reads the list of {who.name}, not {operator}")
        head = store.head_version()
        entries = store.entries_since(since, limit=limit)
        next_since = entries[-1].version if entries else since
        return {
            "operator": who.name,
            "since": since,
            "next_since": next_since,
            "head_version": head,
            "more": next_since < head,
            "entries": [entry_payload(e, operator=who.name, plan=plan) for e in entries],
        }

    @app.post("/unblock")
    def unblock(request: UnblockRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
        if who.kind != "analyst":
            raise HTTPException(403, "only analyst tokens may unblock")
        result = store.unblock(
            request.number,
            analyst=who.name,
            reason=request.reason,
            request_id=request.request_id,
            scope=request.scope,
        )
        if loop is not None and result.entries:
            loop.wake()
        return {
            "entries": [entry_dict(e) for e in result.entries],
            "cleared": result.cleared,
            "reviews_overturned": result.reviews_overturned,
            "replayed": result.replayed,
            "published_to": list(operators) if result.entries else [],
        }

    return app
