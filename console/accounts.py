"""Console accounts: argon2 hashes, lock-out after repeated wrong passwords."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from streaming.blocklist.db import utcnow, writer
from streaming.blocklist.errors import BlocklistError
from streaming.blocklist.models import ROLES, User

_hasher = PasswordHasher()
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
MIN_PASSWORD = 10
#: verified against when the name is unknown, so the answer takes as long either way
_DUMMY_HASH = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class Account:
    name: str
    role: str


@dataclass(frozen=True)
class LoginResult:
    account: Account | None
    #: ``ok``, ``bad`` (unknown name or wrong password), ``locked``
    status: str
    locked_until: dt.datetime | None = None


def add_user(engine: sa.Engine, name: str, role: str, password: str, *, now: dt.datetime | None = None) -> Account:
    """Create an account, or replace the role and password of an existing one."""
    if not NAME_RE.match(name):
        raise BlocklistError(f"user name {name[:40]!r}: use 2-64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise BlocklistError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise BlocklistError(f"the password must have at least {MIN_PASSWORD} characters")
    now = now or utcnow()
    with Session(writer(engine)) as session, session.begin():
        user = session.scalar(sa.select(User).where(User.name == name))
        if user is None:
            user = User(name=name, failed_logins=0, created_at=now)
            session.add(user)
        user.role = role
        user.password_hash = _hasher.hash(password)
        user.failed_logins = 0
        user.locked_until = None
    return Account(name, role)


def find_user(engine: sa.Engine, name: str) -> Account | None:
    with Session(engine) as session:
        user = session.scalar(sa.select(User).where(User.name == name))
        return None if user is None else Account(user.name, user.role)


def list_users(engine: sa.Engine) -> list[User]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(sa.select(User).order_by(User.name)))


def authenticate(
    engine: sa.Engine,
    name: str,
    password: str,
    *,
    max_failed: int = 5,
    lockout: dt.timedelta = dt.timedelta(minutes=15),
    now: dt.datetime | None = None,
) -> LoginResult:
    """Check a password; the ``max_failed``-th wrong one in a row locks the account for ``lockout``
    (a locked account answers ``locked`` even to the right password)."""
    now = now or utcnow()
    with Session(writer(engine), expire_on_commit=False) as session, session.begin():
        user = session.scalar(sa.select(User).where(User.name == name).with_for_update())
        if user is None:
            try:
                _hasher.verify(_DUMMY_HASH, password)
            except VerificationError:
                pass
            return LoginResult(None, "bad")
        if user.locked_until is not None and user.locked_until > now:
            return LoginResult(None, "locked", user.locked_until)
        try:
            _hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            user.failed_logins += 1
            if user.failed_logins >= max_failed:
                user.locked_until = now + lockout
                user.failed_logins = 0
                return LoginResult(None, "locked", user.locked_until)
            return LoginResult(None, "bad")
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        return LoginResult(Account(user.name, user.role), "ok")
