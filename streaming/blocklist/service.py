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
about which token came close. The token is checked before a request's body is read, and a body
over ``service.max_body_bytes`` (64 KiB) is refused with 413 while it streams in. Every path but
``/healthz`` and ``/metrics`` (open for probes and Prometheus) needs a token, unknown paths too,
so probing says nothing. ``/openapi.json`` describes the API to any caller with a token; the
``/docs`` and ``/redoc`` pages are off (a browser could not send the token for their spec).
``HEAD`` answers on every ``GET`` route.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.errors import ConfigError, SimGuardError
from features.numbering import NumberingPlan
from features.schema import TRUNK_TYPES
from streaming.blocklist.decision import SCOPE_ALL, trunk_scope
from streaming.blocklist.loop import DistributionLoop
from streaming.blocklist.payload import entry_dict, entry_payload
from streaming.blocklist.settings import BlocklistSettings, ServiceSettings
from streaming.blocklist.store import BlocklistStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    kind: Literal["operator", "analyst"]
    name: str


#: what ``POST /unblock`` may name as ``scope``
SCOPES: tuple[str, ...] = (SCOPE_ALL, *(trunk_scope(t) for t in TRUNK_TYPES))
#: ``GET`` ``since`` fits the store's 64-bit version column
MAX_VERSION = 2**63 - 1
#: paths open without a token: probes and the Prometheus scraper
PUBLIC_PATHS = frozenset({"/healthz", "/metrics"})
#: tokens copied from the example config; ``serve`` refuses to start with one
PLACEHOLDERS = ("change-me", "changeme", "replace-me", "replaceme", "<token>")


class UnblockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: E.164; visual separators are dropped (``+84 989 051 734``), anything else is a 422
    number: str = Field(min_length=2, max_length=32)
    reason: str = Field(min_length=1, max_length=2000)
    #: the analyst's id for this request: repeating it repeats nothing
    request_id: str = Field(min_length=1, max_length=128)
    #: one of :data:`SCOPES` (``all``, ``trunk:international_gateway``); ``None``: every active scope
    scope: str | None = Field(None, max_length=64)

    @field_validator("number", "reason", "request_id", "scope")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        # a lone surrogate parses from JSON (``"\ud800"``) but can be neither stored nor echoed
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("not valid Unicode text (a lone surrogate)") from None
            if any(ord(c) < 32 and c not in "\t\n" for c in value) or "\x7f" in value:
                raise ValueError("control characters are not allowed")
        return value

    @field_validator("request_id", "scope")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in "\t\n"):
            raise ValueError("must be one line")
        return value

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: str | None) -> str | None:
        if value is not None and value not in SCOPES:
            raise ValueError(f"unknown scope; use one of {', '.join(SCOPES)}")
        return value


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": message}])


def check_serving(*, host: str, service: ServiceSettings, blocklist: BlocklistSettings) -> None:
    """Refuse to serve with a placeholder token, or off loopback without TLS (``ConfigError``)."""
    secrets = {
        f"blocklist.operators.{op}.{kind}": getattr(cfg, kind)
        for op, cfg in blocklist.operators.items()
        for kind in ("api_token", "webhook_token")
    }
    secrets.update({f"blocklist.analysts.{name}": token for name, token in blocklist.analysts.items()})
    for where, secret in secrets.items():
        if secret is not None and any(p in secret.get_secret_value().lower() for p in PLACEHOLDERS):
            raise ConfigError(
                f"{where} is still a placeholder ('change-me'): set a real token, e.g. through the environment"
            )
    for path in (service.tls_certfile, service.tls_keyfile):
        if path is not None and not path.is_file():
            raise ConfigError(f"service TLS file {path}: no such file")
    if service.tls_certfile is None and not _is_loopback(host):
        raise ConfigError(
            f"serving on {host} over plain HTTP would send tokens in clear: set service.tls_certfile and "
            "service.tls_keyfile, or bind 127.0.0.1 behind a TLS proxy"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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


class _Guard:
    """ASGI middleware in front of every route: the bearer token is checked before the body is
    read (so an unauthenticated 50 MB upload costs nothing), the body is read up to ``max_body``
    bytes (413 beyond), and ``HEAD`` is served as ``GET`` without the body."""

    def __init__(self, app: ASGIApp, *, identify: Callable[[bytes], Caller | None], max_body: int) -> None:
        self.app = app
        self.identify = identify
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in PUBLIC_PATHS:
            who = self.identify(_bearer(scope))
            if who is None:
                await _reject(send, 401, "missing or unknown bearer token", {"www-authenticate": "Bearer"})
                return
            scope.setdefault("state", {})["caller"] = who
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
            send = _without_body(send)
        body = await self._body(scope, receive)
        if body is None:
            await _reject(send, 413, f"request body larger than {self.max_body} bytes")
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, once the response is out

        await self.app(scope, replay, send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _bearer(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else b""
    return b""


async def _reject(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _without_body(send: Send) -> Send:
    async def head_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_send


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

    def identify(given: bytes) -> Caller | None:
        found: Caller | None = None
        for who, secret in tokens:
            # no early exit: every request costs the same whichever token matched
            if hmac.compare_digest(given, secret) and given:
                found = who
        return found

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

    # no /docs or /redoc: behind a bearer token a browser could not load their spec anyway, and they
    # pull scripts from a CDN; /openapi.json (token required) is the API's description
    app = FastAPI(title="SIMGuard blocklist", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(_Guard, identify=identify, max_body=service.max_body_bytes)

    def caller(request: Request) -> Caller:
        return request.state.caller  # set by _Guard, which answered 401 without one

    @app.exception_handler(SimGuardError)
    async def _simguard_error(_request: Request, exc: SimGuardError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> Response:
        # where and what, never the input: it may not even be encodable (a lone surrogate)
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")} for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            head = store.head_version()
        except Exception as exc:
            return JSONResponse({"status": "down", "detail": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "head_version": head})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body = b"".join(generate_latest(r) for r in (REGISTRY, gauges, *registries))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # dependencies as default values, not ``Annotated``: with postponed annotations FastAPI would
    # look the closure's names up in the module and miss them
    @app.get("/blocklist")
    def blocklist_since(
        who: Caller = Depends(caller),
        since: int = Query(0, ge=0, le=MAX_VERSION, description="last version the caller holds"),
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
        number = plan.normalise(request.number)
        if number is None:
            raise _invalid("number", "not an E.164 number (+ country code and digits; spaces, '-', '.', '()' allowed)")
        result = store.unblock(
            number,
            analyst=who.name,
            reason=request.reason,
            request_id=request.request_id,
            scope=request.scope,
        )
        if loop is not None and result.entries:
            loop.wake()
        return {
            "number": number,
            #: true only when a block was lifted by this request (or by its first try, when replayed)
            "cleared": bool(result.entries),
            "lifted": [
                {"scope": e.scope, "version": e.version, "lifts_version": e.lifts_version} for e in result.entries
            ],
            #: the number is on the analysts' allowlist: the model cannot block it again
            "allowlisted": result.cleared,
            "entries": [entry_dict(e) for e in result.entries],
            "reviews_overturned": result.reviews_overturned,
            "replayed": result.replayed,
            "published_to": list(operators) if result.entries else [],
        }

    return app
