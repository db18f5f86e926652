"""Alembic environment for the blocklist schema, run programmatically by
``streaming.blocklist.migrate.upgrade(engine_url)`` (no alembic.ini needed).

Online: the caller hands over an open connection in ``config.attributes["connection"]`` (so the
SQLite settings of ``streaming.blocklist.db.make_engine`` apply), or the URL in
``sqlalchemy.url``. Offline (``--sql``): the URL's dialect renders the DDL for a DBA.
"""

from __future__ import annotations

from alembic import context

from streaming.blocklist.db import make_engine
from streaming.blocklist.migrate import VERSION_TABLE
from streaming.blocklist.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things in place: batch mode copies the table instead
        render_as_batch=True,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
