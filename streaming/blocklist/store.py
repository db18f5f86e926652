"""The blocklist store: decisions in, versioned entries out.

Every change to what operators must enforce is an *entry* (``block`` or ``unblock``) keyed by
(number, scope); its id is its version, a global sequence that only grows and that every write
transaction takes under one lock, so a reader that follows ``version > cursor`` never skips one.

:class:`BlocklistStore` puts together its parts, one module each:

- :mod:`streaming.blocklist.writes`: the version lock, new entries, lifted blocks;
- :mod:`streaming.blocklist.apply`: the model's decisions (idempotent, the allowlist wins, an
  active block is not extended);
- :mod:`streaming.blocklist.lifts`: expiry, an analyst's unblock, the registered-business allowlist;
- :mod:`streaming.blocklist.queries`: the reads; :mod:`streaming.blocklist.records`: the records
  they all hand out.
"""

from __future__ import annotations

__all__ = [
    "AllowlistSync",
    "ApplyResult",
    "BlocklistStore",
    "EntryRecord",
    "NumberHistory",
    "UnblockResult",
    "read_numbers",
]

from collections.abc import Iterable

import sqlalchemy as sa

from features.numbering import NumberingPlan, load_numbering_plan
from streaming.blocklist.apply import ApplyDecisions
from streaming.blocklist.db import make_engine, writer
from streaming.blocklist.lifts import LiftBlocks
from streaming.blocklist.numbers_file import read_numbers
from streaming.blocklist.records import AllowlistSync, ApplyResult, EntryRecord, NumberHistory, UnblockResult


class BlocklistStore(ApplyDecisions, LiftBlocks):
    """The versioned blocklist on SQLite or PostgreSQL.

    ``webhook_operators``: operators with a webhook; each new entry gets one outbox row per such
    operator in the same transaction (``streaming.blocklist.publish_webhook`` delivers them).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        webhook_operators: Iterable[str] = (),
        plan: NumberingPlan | None = None,
    ) -> None:
        self.engine = engine
        self._writer = writer(engine)
        self.webhook_operators = tuple(webhook_operators)
        self.plan = plan or load_numbering_plan()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        webhook_operators: Iterable[str] = (),
        plan: NumberingPlan | None = None,
        migrate: bool = True,
    ) -> BlocklistStore:
        """Connect to ``url`` and (by default) bring the schema to the latest migration."""
        from streaming.blocklist.migrate import upgrade

        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        return cls(engine, webhook_operators=webhook_operators, plan=plan)

    def close(self) -> None:
        self.engine.dispose()
