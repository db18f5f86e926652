"""Per channel and operator: the last version a channel has sent (Kafka), and a lease so that
only one process sends to an operator at a time.

The streaming job and ``simguard serve`` may both publish; the lease keeps them from sending the
same entries twice in the normal case. Correctness does not rest on it: channels are at least
once, and a cursor only ever moves forward (``UPDATE ... WHERE last_version < :v``).
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from streaming.blocklist.db import utcnow, writer
from streaming.blocklist.models import PublishState

_T = PublishState.__table__


def _ensure_row(engine: sa.Engine, channel: str, operator: str) -> None:
    with engine.connect() as conn:
        exists = conn.execute(sa.select(_T.c.channel).where(_T.c.channel == channel, _T.c.operator == operator)).first()
    if exists:
        return
    try:
        with writer(engine).begin() as conn:
            conn.execute(sa.insert(_T).values(channel=channel, operator=operator, last_version=0, updated_at=utcnow()))
    except sa.exc.IntegrityError:
        pass  # another process created it first: the row is all we wanted


def read_cursor(engine: sa.Engine, *, channel: str, operator: str) -> int:
    with engine.connect() as conn:
        value = conn.scalar(sa.select(_T.c.last_version).where(_T.c.channel == channel, _T.c.operator == operator))
    return int(value or 0)


def advance_cursor(engine: sa.Engine, *, channel: str, operator: str, version: int) -> None:
    """Record that every version up to ``version`` was sent and acknowledged."""
    _ensure_row(engine, channel, operator)
    with writer(engine).begin() as conn:
        conn.execute(
            sa.update(_T)
            .where(_T.c.channel == channel, _T.c.operator == operator, _T.c.last_version < version)
            .values(last_version=version, updated_at=utcnow())
        )


class Lease:
    """``acquire(operator)`` is true for one owner at a time, until ``lease_s`` passes without a
    renewal (a crashed owner's lease lapses on its own)."""

    def __init__(self, engine: sa.Engine, *, channel: str, lease_s: float, owner: str | None = None) -> None:
        self.engine = engine
        self.channel = channel
        self.lease_s = lease_s
        self.owner = owner or uuid.uuid4().hex

    def acquire(self, operator: str, *, now: dt.datetime | None = None) -> bool:
        # the wall clock, not a caller's simulated ``now``: leases are between live processes
        now = now or utcnow()
        _ensure_row(self.engine, self.channel, operator)
        with writer(self.engine).begin() as conn:
            taken = conn.execute(
                sa.update(_T)
                .where(
                    _T.c.channel == self.channel,
                    _T.c.operator == operator,
                    sa.or_(_T.c.lease_owner.is_(None), _T.c.lease_owner == self.owner, _T.c.lease_until < now),
                )
                .values(lease_owner=self.owner, lease_until=now + dt.timedelta(seconds=self.lease_s), updated_at=now)
            )
            return taken.rowcount == 1

    def renew(self, operator: str, *, now: dt.datetime | None = None) -> bool:
        """Extend a lease this owner still holds; false when it lapsed (another owner may have it
        now, or may take it at any moment), and the caller must stop sending."""
        now = now or utcnow()
        with writer(self.engine).begin() as conn:
            renewed = conn.execute(
                sa.update(_T)
                .where(
                    _T.c.channel == self.channel,
                    _T.c.operator == operator,
                    _T.c.lease_owner == self.owner,
                    _T.c.lease_until >= now,
                )
                .values(lease_until=now + dt.timedelta(seconds=self.lease_s), updated_at=now)
            )
            return renewed.rowcount == 1

    def release(self, operator: str) -> None:
        with writer(self.engine).begin() as conn:
            conn.execute(
                sa.update(_T)
                .where(_T.c.channel == self.channel, _T.c.operator == operator, _T.c.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None)
            )
