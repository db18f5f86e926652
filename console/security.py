"""Sessions, CSRF tokens, login rate limits and role checks for the console."""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from fastapi import HTTPException, Request

from console.accounts import Account

#: every role's pages; ``admin`` manages accounts, ``regulator`` sees aggregates only
ANALYSTS = ("analyst", "supervisor")
SUPERVISORS = ("supervisor",)
ADMINS = ("admin",)
REGULATORS = ("regulator", "admin")


class LoginRequired(Exception):
    """No valid session: pages redirect to the login page, the API answers 401."""


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, given: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not given or not hmac.compare_digest(str(expected), str(given)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def require(request: Request, roles: Iterable[str]) -> Account:
    """The signed-in account, if its role is one of ``roles`` (401/redirect without a session, 403
    with another role). The role is read from the database on every request."""
    from console.accounts import find_user

    name, login_at = request.session.get("user"), request.session.get("login_at")
    max_age = request.app.state.session_seconds
    if not name or not isinstance(login_at, (int, float)) or time.time() - login_at > max_age:
        request.session.clear()
        raise LoginRequired()
    account = find_user(request.app.state.store.engine, name)
    if account is None:
        request.session.clear()
        raise LoginRequired()
    if account.role not in tuple(roles):
        raise HTTPException(403, f"the {account.role} role may not open this page")
    return account


class RateLimit:
    """At most ``limit`` events per key in any ``window_s`` seconds (in this process)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str) -> bool:
        """Record one event; ``False`` when over the limit."""
        now = time.monotonic()
        q = self._events.setdefault(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        if len(q) >= self.limit:
            return False
        q.append(now)
        if len(self._events) > 10000:  # forget idle clients
            for k in [k for k, v in self._events.items() if not v or now - v[-1] > self.window_s]:
                del self._events[k]
        return True


def secret_key(path: Path) -> str:
    """The session signing key kept at ``path`` (created 0600 on first use)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        key = secrets.token_urlsafe(48)
        fh.write(key)
    return key
