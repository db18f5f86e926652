"""Engines for the blocklist database: SQLite by default, PostgreSQL by URL.

SQLite gets WAL (the HTTP service reads while the streaming job writes), a busy timeout, foreign
keys, and explicit ``BEGIN``: pysqlite's own transaction handling starts a transaction only at
the first write, so two reads in one session could see two states of the file. Writers ask for
``BEGIN IMMEDIATE`` (:func:`writer`): a deferred transaction that reads first and writes later can
fail at once with "database is locked" instead of waiting.
"""

from __future__ import annotations

import datetime as dt
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
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
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
