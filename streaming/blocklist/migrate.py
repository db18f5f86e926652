"""Alembic, run from code: ``upgrade(engine_url)`` on every start brings the schema to head.

>>> upgrade("sqlite:////tmp/simguard-doc/blocklist.db")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from streaming.blocklist.errors import BlocklistError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: its own version table, so other parts of SIMGUARD may keep Alembic schemas in the same database
VERSION_TABLE = "blocklist_alembic_version"
#: PostgreSQL advisory lock key for migrations ("SGBL" in ASCII)
_PG_LOCK_KEY = 0x5347424C


def alembic_config(engine_url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if engine_url is not None:
        # ConfigParser interpolation would read a '%' in a password as a reference
        cfg.set_main_option("sqlalchemy.url", engine_url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None  # the package ships at least one revision
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine_url: str | sa.Engine, *, revision: str = "head") -> None:
    """Migrate the database at ``engine_url`` (or an engine) to ``revision``; safe to repeat."""
    from streaming.blocklist.db import make_engine, writer

    engine = engine_url if isinstance(engine_url, sa.Engine) else make_engine(engine_url)
    try:
        if current_revision(engine) == head_revision() and revision == "head":
            return
        cfg = alembic_config()
        with writer(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                # two processes starting at once: the second waits, then finds the schema at head
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except sa.exc.OperationalError as exc:
        shown = engine.url.render_as_string(hide_password=True)
        raise BlocklistError(
            f"cannot migrate the blocklist database {shown}: {str(exc.orig).splitlines()[0]} (check database.url)"
        ) from None
    finally:
        if engine is not engine_url:
            engine.dispose()


def downgrade(engine_url: str | sa.Engine, *, revision: str = "base") -> None:
    """Undo migrations down to ``revision`` (``base``: drop every blocklist table)."""
    from streaming.blocklist.db import make_engine, writer

    engine = engine_url if isinstance(engine_url, sa.Engine) else make_engine(engine_url)
    try:
        cfg = alembic_config()
        with writer(engine).begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        if engine is not engine_url:
            engine.dispose()
