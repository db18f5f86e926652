"""Engines for the blocklist database: SQLite by default, PostgreSQL by URL.

SQLite gets WAL (the HTTP service reads while the streaming job writes), a busy timeout, foreign
keys, and explicit ``BEGIN``: pysqlite's own transaction handling starts a transaction only at
the first write, so two reads in one session could see two states of the file. Writers ask for
``BEGIN IMMEDIATE`` (:func:`writer`): a deferred transaction that reads first and writes later can
fail at once with "database is locked" instead of waiting.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

#: the writer's SQLite transaction mode, read by the ``begin`` hook below
_SQLITE_BEGIN = "simguard_sqlite_begin"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; for SQLite files the parent folder is created."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        _private_file(Path(parsed.database).expanduser())
    engine = sa.create_engine(url, connect_args={"timeout": 30}, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see the module docstring)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


#: the database holds analysts' notes and the numbers of people under suspicion: owner only, like
#: the env file (SQLite gives its -wal and -shm files the database file's mode)
DB_FILE_MODE = 0o600


def _private_file(path: Path) -> None:
    """Create the SQLite file (and its folder) as ``0600`` before SQLite does with the umask's
    mode, and take group and other bits off a file we own that has them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _new_wal_file(path)
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, DB_FILE_MODE)
    except PermissionError:
        pass  # someone else's file: its owner decides


def _new_wal_file(path: Path) -> None:
    """Put a new, empty database file at ``path``, already in WAL mode, in one step. Processes
    opening a new file together would each switch it into WAL, and that switch upgrades a read
    lock, which SQLite refuses at once ("database is locked") instead of waiting for it."""
    new = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new")
    os.close(os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_FILE_MODE))
    try:
        conn = sqlite3.connect(new)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        os.link(new, path)  # fails if another process put its file there first
    except FileExistsError:
        pass
    finally:
        new.unlink(missing_ok=True)


def writer(engine: Engine) -> Engine:
    """The same engine, whose SQLite transactions take the write lock when they begin."""
    return engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out: PostgreSQL ``timestamptz``; SQLite stores naive UTC text."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        return None if value is None else as_utc(value)
