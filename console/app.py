"""The console's web app: server-rendered pages (Jinja2, plain forms) and a small operator API.

Pages need a session (signed cookie, ``console.session_hours`` from login); without one they
redirect to ``/login`` and ``/api/`` answers 401. Every POST form carries the session's CSRF
token. Operators' customer-care systems file appeals with their blocklist API token
(``Authorization: Bearer``), as for ``GET /blocklist``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.sessions import SessionMiddleware

from console import views
from console.accounts import add_user, authenticate, list_users
from console.actions import DECISIONS, ConsoleStore
from console.chart import activity_png
from console.regulator import regulator_router
from console.security import (
    ADMINS,
    ANALYSTS,
    SUPERVISORS,
    LoginRequired,
    RateLimit,
    check_csrf,
    csrf_token,
    require,
)
from console.settings import ConsoleSettings
from streaming.blocklist.db import utcnow
from streaming.blocklist.decision import SIM_FRAUD_TYPES
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.models import ROLES
from streaming.blocklist.settings import AuditSettings

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class AppealRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=2, max_length=32)
    reason: str = Field(min_length=1, max_length=4000)
    request_id: str = Field(min_length=1, max_length=128)


def _age(delta: dt.timedelta | None) -> str:
    if delta is None:
        return "-"
    s = int(delta.total_seconds())
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s >= 86400:
        return f"{sign}{s // 86400}d {s % 86400 // 3600}h"
    return f"{sign}{s // 3600}h {s % 3600 // 60}m"


def _local(path: str) -> str:
    """``path`` if it stays on this site, else ``/`` (no open redirect through ``next``)."""
    ok = path.startswith("/") and not path.startswith("//") and "\\" not in path and not any(c < " " for c in path)
    return path if ok else "/"


def create_app(
    store: ConsoleStore,
    settings: ConsoleSettings,
    *,
    secret_key: str,
    operator_tokens: dict[str, str],
    audit: AuditSettings | None = None,
) -> FastAPI:
    app = FastAPI(title="SIMGuard console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.session_seconds = settings.session_hours * 3600
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        session_cookie="simguard_console",
        max_age=max(1, int(settings.session_hours * 3600)),
        same_site="strict",
        https_only=settings.secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    limiter = RateLimit(settings.login_attempts_per_minute)
    tokens = [(op, tok.encode()) for op, tok in operator_tokens.items() if tok]
    size = settings.page_size

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return render(request, "error.html", {"message": str(exc.detail)}, status=exc.status_code)

    @app.exception_handler(BlocklistError)
    async def _bad(request: Request, exc: BlocklistError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return render(request, "error.html", {"message": str(exc)}, status=400)

    def render(request: Request, name: str, ctx: dict[str, Any], *, status: int = 200) -> HTMLResponse:
        base = {
            "csrf": csrf_token(request),
            "me": request.session.get("user"),
            "role": request.session.get("role"),
            "age": _age,
            "new_id": lambda: secrets.token_urlsafe(12),
        }
        return templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)

    # -- sign in ----------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return render(
            request, "login.html", {"next": _local(next)}
        )

    @app.post("/login")
    def login(
        request: Request,
        name: str = Form(..., max_length=64),
        password: str = Form(..., max_length=1024),
        csrf: str | None = Form(None),
        next: str = Form("/"),
    ) -> Response:
        check_csrf(request, csrf)
        client = request.client.host if request.client else "?"
        if not limiter.hit(client) or not limiter.hit(f"user:{name}"):
            return render(
                request, "login.html", {"next": "/", "error": "Too many attempts: wait a minute."}, status=429
            )
        result = authenticate(
            store.engine,
            name,
            password,
            max_failed=settings.max_failed_logins,
            lockout=dt.timedelta(minutes=settings.lockout_minutes),
        )
        store.log_login(name, result=result.status, client=client)
        if result.account is None:
            message = (
                "This account is locked after repeated wrong passwords; try again later."
                if result.status == "locked"
                else "Wrong name or password."
            )
            return render(request, "login.html", {"next": "/", "error": message}, status=401)
        request.session.clear()  # a new session on login (no fixation)
        request.session.update(
            user=result.account.name, role=result.account.role, login_at=time.time(), csrf=secrets.token_urlsafe(32)
        )
        target = _local(next)
        return RedirectResponse(target, status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str | None = Form(None)) -> Response:
        check_csrf(request, csrf)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def home(request: Request) -> Response:
        me = require(request, ROLES)
        target = {"regulator": "/regulator", "admin": "/admin/users"}.get(me.role, "/queue")
        return RedirectResponse(target, status_code=303)

    # -- the queue and a flag ---------------------------------------------------------------------

    @app.get("/queue", response_class=HTMLResponse)
    def queue_page(
        request: Request,
        kind: str = Query("reviews", pattern="^(reviews|blocks)$"),
        status: str | None = Query(None, max_length=16),
        fraud_type: str | None = Query(None, max_length=32),
        operator: str | None = Query(None, max_length=32),
        model_version: str | None = Query(None, max_length=64),
        sort: str = Query("score", pattern="^(score|age)$"),
        page: int = Query(1, ge=1, le=1_000_000),
    ) -> HTMLResponse:
        require(request, ANALYSTS)
        if status is None:
            status = "open" if kind == "reviews" else "active"
        f = views.QueueFilters(
            kind, status or None, fraud_type or None, operator or None, model_version or None, sort, page
        )
        data = views.queue(store.engine, f, size=size)
        params = {k: v for k, v in vars(f).items() if v and k != "page"}
        return render(
            request,
            "queue.html",
            {
                **data,
                "f": f,
                "now": utcnow(),
                "params": params,
                "urlencode": urlencode,
                "near": dt.timedelta(hours=settings.appeal_near_due_hours),
            },
        )

    @app.get("/flags/{number}", response_class=HTMLResponse)
    def flag_page(request: Request, number: str) -> HTMLResponse:
        require(request, ANALYSTS)
        data = views.flag(store.engine, number)
        if not (data.entries or data.reviews or data.decisions or data.appeals or data.actions):
            raise HTTPException(404, f"nothing is known about {number}")
        top = data.decisions[0] if data.decisions else None
        calls = (top.evidence or {}).get("recent_calls") or [] if top else []
        chart = activity_png(calls, title=f"{number}: calls in the evidence window, per hour") if calls else None
        # how much of the window the number had been active in (``hours_seen_*``), not its length
        features = (top.evidence or {}).get("features") or {} if top else {}
        hours = next((v for k, v in features.items() if k.startswith("hours_seen_") and v is not None), None)
        return render(
            request,
            "flag.html",
            {
                "flag": data,
                "top": top,
                "chart": chart,
                "calls": calls,
                "hours": hours,
                "decisions": DECISIONS,
                "related": views.related(store.engine, number),
                "now": utcnow(),
            },
        )

    def _decide_redirect(number: str) -> RedirectResponse:
        return RedirectResponse(f"/flags/{quote(number)}", status_code=303)

    @app.post("/flags/{number}/decide")
    def decide(
        request: Request,
        number: str,
        action: str = Form(...),
        comment: str = Form("", max_length=4000),
        request_id: str = Form(..., min_length=8, max_length=128),
        csrf: str | None = Form(None),
    ) -> Response:
        check_csrf(request, csrf)
        me = require(request, ANALYSTS)
        store.decide(number, action, comment=comment, actor=me.name, request_id=request_id)
        return _decide_redirect(number)

    @app.post("/flags/{number}/group")
    async def decide_group(request: Request, number: str) -> Response:
        """One decision applied to the flag and the related numbers ticked on its page."""
        form = await request.form()
        check_csrf(request, form.get("csrf"))  # type: ignore[arg-type]
        me = require(request, ANALYSTS)
        action, comment = str(form.get("action", "")), str(form.get("comment", ""))[:4000]
        request_id = str(form.get("request_id", ""))
        if not 8 <= len(request_id) <= 100:
            raise HTTPException(422, "a request_id of 8 to 100 characters is required")
        numbers = [number, *(str(n) for n in form.getlist("numbers"))][:101]
        for n in dict.fromkeys(numbers):
            try:
                store.decide(n, action, comment=comment, actor=me.name, request_id=f"{request_id}:{n}")
            except BlocklistError as exc:
                if n == number or "no open" not in str(exc):  # a sibling without a flag is left as it is
                    raise
        return _decide_redirect(number)

    @app.post("/flags/{number}/note")
    def note(
        request: Request,
        number: str,
        comment: str = Form("", max_length=4000),
        request_id: str = Form(..., min_length=8, max_length=128),
        csrf: str | None = Form(None),
    ) -> Response:
        check_csrf(request, csrf)
        me = require(request, ANALYSTS)
        store.note(number, comment=comment, actor=me.name, request_id=request_id)
        return _decide_redirect(number)

    @app.post("/flags/{number}/allowlist")
    def allowlist(
        request: Request,
        number: str,
        comment: str = Form("", max_length=4000),
        request_id: str = Form(..., min_length=8, max_length=128),
        csrf: str | None = Form(None),
    ) -> Response:
        check_csrf(request, csrf)
        me = require(request, SUPERVISORS)
        store.allowlist(number, comment=comment, actor=me.name, request_id=request_id)
        return _decide_redirect(number)

    @app.get("/manual-block", response_class=HTMLResponse)
    def manual_block_form(request: Request) -> HTMLResponse:
        require(request, ANALYSTS)
        return render(request, "manual_block.html", {"fraud_types": SIM_FRAUD_TYPES})

    @app.post("/manual-block")
    def manual_block(
        request: Request,
        number: str = Form(..., max_length=32),
        fraud_type: str = Form(...),
        evidence: str = Form("", max_length=4000),
        request_id: str = Form(..., min_length=8, max_length=128),
        csrf: str | None = Form(None),
    ) -> Response:
        check_csrf(request, csrf)
        me = require(request, ANALYSTS)
        number = number.strip()
        store.manual_block(number, fraud_type, evidence=evidence, actor=me.name, request_id=request_id)
        return _decide_redirect(number)

    @app.post("/reviews/{review_id}/assign")
    def assign(request: Request, review_id: int, csrf: str | None = Form(None)) -> Response:
        check_csrf(request, csrf)
        me = require(request, ANALYSTS)
        store.assign(review_id, actor=me.name)
        return RedirectResponse("/queue", status_code=303)

    # -- appeals ----------------------------------------------------------------------------------

    @app.get("/appeals/new", response_class=HTMLResponse)
    def appeal_form(request: Request, number: str = Query("", max_length=32)) -> HTMLResponse:
        require(request, ANALYSTS)
        return render(request, "appeal_new.html", {"number": number})

    @app.post("/appeals")
    def appeal_file(
        request: Request,
        number: str = Form(..., max_length=32),
        reason: str = Form("", max_length=4000),
        request_id: str = Form(..., min_length=8, max_length=128),
        csrf: str | None = Form(None),
    ) -> Response:
        check_csrf(request, csrf)
        me = require(request, ANALYSTS)
        appeal, _new = store.file_appeal(
            number.strip(), operator="console", request_id=request_id, reason=reason, filed_by=me.name
        )
        return RedirectResponse(f"/appeals/{appeal.id}", status_code=303)

    @app.get("/appeals/{appeal_id}", response_class=HTMLResponse)
    def appeal_page(request: Request, appeal_id: int) -> HTMLResponse:
        require(request, ANALYSTS)
        appeal = store.get_appeal(appeal_id)
        if appeal is None:
            raise HTTPException(404, f"no appeal {appeal_id}")
        return render(request, "appeal.html", {"appeal": appeal, "now": utcnow()})

    @app.post("/appeals/{appeal_id}/decide")
    def appeal_decide(
        request: Request,
        appeal_id: int,
        outcome: str = Form(...),
        comment: str = Form("", max_length=4000),
        request_id: str = Form(..., min_length=8, max_length=128),
        csrf: str | None = Form(None),
    ) -> Response:
        check_csrf(request, csrf)
        me = require(request, ANALYSTS)
        store.decide_appeal(appeal_id, outcome, comment=comment, actor=me.name, request_id=request_id)
        return RedirectResponse(f"/appeals/{appeal_id}", status_code=303)

    def operator_of(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip().encode() if auth[:7].lower() == "bearer " else b""
        found = None
        for op, tok in tokens:  # every token, every time: the timing says nothing
            if hmac.compare_digest(given, tok) and given:
                found = op
        if found is None:
            raise HTTPException(401, "missing or unknown operator token", headers={"www-authenticate": "Bearer"})
        return found

    def appeal_json(a: Any) -> dict[str, Any]:
        return {
            "id": a.id,
            "number": a.number,
            "operator": a.operator,
            "request_id": a.request_id,
            "status": a.status,
            "created_at": a.created_at.isoformat(),
            "due_at": a.due_at.isoformat(),
            "decided_at": a.decided_at.isoformat() if a.decided_at else None,
            "outcome_comment": a.outcome_comment,
            "unblock_version": a.entry_id,
        }

    @app.post("/api/appeals", status_code=201)
    def api_file(request: Request, body: AppealRequest) -> JSONResponse:
        op = operator_of(request)
        appeal, new = store.file_appeal(
            body.number, operator=op, request_id=body.request_id, reason=body.reason, filed_by=f"operator:{op}"
        )
        return JSONResponse(appeal_json(appeal), status_code=201 if new else 200)

    @app.get("/api/appeals/{appeal_id}")
    def api_appeal(request: Request, appeal_id: int) -> dict[str, Any]:
        op = operator_of(request)
        appeal = store.get_appeal(appeal_id)
        if appeal is None or appeal.operator != op:
            raise HTTPException(404, f"no appeal {appeal_id} of {op}")
        return appeal_json(appeal)

    @app.get("/api/queue")
    def api_queue(request: Request, page: int = Query(1, ge=1, le=1_000_000)) -> dict[str, Any]:
        require(request, ANALYSTS)
        data = views.queue(store.engine, views.QueueFilters(page=page), size=size)
        return {
            "counts": data["counts"],
            "total": data["page"].total,
            "reviews": [
                {"id": r.id, "number": r.number, "fraud_type": r.fraud_type, "score": r.score, "status": r.status}
                for (r,) in data["page"].rows
            ],
        }

    # -- my work, accounts, regulator -------------------------------------------------------------

    @app.get("/work", response_class=HTMLResponse)
    def work(request: Request, everyone: bool = False) -> HTMLResponse:
        me = require(request, ANALYSTS)
        if everyone and me.role not in SUPERVISORS:
            raise HTTPException(403, "only a supervisor sees everyone's work")
        data = views.my_work(store.engine, None if everyone else me.name)
        return render(request, "work.html", {**data, "everyone": everyone})

    @app.get("/admin/users", response_class=HTMLResponse)
    def users_page(request: Request) -> HTMLResponse:
        require(request, ADMINS)
        return render(request, "users.html", {"users": list_users(store.engine), "roles": ROLES})

    @app.post("/admin/users")
    def users_add(
        request: Request,
        name: str = Form(..., max_length=64),
        role: str = Form(...),
        password: str = Form(..., max_length=1024),
        csrf: str | None = Form(None),
    ) -> Response:
        check_csrf(request, csrf)
        require(request, ADMINS)
        add_user(store.engine, name, role, password)
        return RedirectResponse("/admin/users", status_code=303)

    app.include_router(regulator_router(store, audit, render=render, page_size=size))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        store.head_version()
        return {"status": "ok"}

    return app
