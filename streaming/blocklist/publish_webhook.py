"""HTTP webhooks per operator, through the outbox table ``webhook_deliveries``.

The store writes one delivery row per (entry, operator with a webhook) in the same transaction as
the entry, so no entry can be committed without its deliveries (the outbox pattern).
:meth:`WebhookDispatcher.deliver_pending` POSTs due rows: the entry's JSON
(:mod:`streaming.blocklist.payload`) with ``Idempotency-Key: <version>``, and the operator's
token as ``Authorization: Bearer``. A 2xx marks the row delivered (after the POST: at least once;
the operator dedupes by the key). One process delivers to an operator at a time: it holds a lease
(``webhook.lease_s``) that it renews before each POST and stops the round when renewal fails.

Per operator, rows go out in version order and the first failure stops that operator's round:
when an operator is down, one request per round finds out, and its later entries wait behind the
failed one instead of overtaking it. The failed row is retried after an exponential backoff with
jitter, ``min(backoff_max_s, backoff_base_s * 2**(attempts-1))``, half fixed and half random (so
operators coming back are not hit by every deliverer at once); ``Retry-After`` on a 429 or 503 is
honoured up to ``backoff_max_s``. After ``max_attempts`` the row is ``failed`` and the operator's
next rows proceed; ``simguard blocklist redeliver --operator X`` puts failed rows back, and an
operator can always resync with ``GET /blocklist?since=`` or a CSV snapshot.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa

from features.numbering import NumberingPlan, load_numbering_plan
from streaming.blocklist import metrics
from streaming.blocklist.cursors import Lease
from streaming.blocklist.db import as_utc, utcnow, writer
from streaming.blocklist.models import Delivery
from streaming.blocklist.payload import entry_payload
from streaming.blocklist.settings import OperatorSettings, WebhookSettings
from streaming.blocklist.store import BlocklistStore

log = logging.getLogger(__name__)

CHANNEL = "webhook"
_D = Delivery.__table__


@dataclass
class DeliveryReport:
    delivered: Counter[str] = field(default_factory=Counter)
    #: attempts that failed and will be retried
    retrying: Counter[str] = field(default_factory=Counter)
    #: rows that used up ``max_attempts``
    failed: Counter[str] = field(default_factory=Counter)

    @property
    def total_delivered(self) -> int:
        return sum(self.delivered.values())


def backoff_s(attempts: int, *, settings: WebhookSettings, rng: random.Random) -> float:
    """Delay after the ``attempts``-th failure: exponential, capped, half of it jittered."""
    capped = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** max(attempts - 1, 0))
    return capped / 2 + rng.uniform(0, capped / 2)


def _retry_after_s(response: httpx.Response | None) -> float | None:
    if response is None or response.status_code not in (429, 503):
        return None
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None  # an HTTP date: the backoff is good enough


class WebhookDispatcher:
    """Deliver the outbox to every operator that has a ``webhook_url``."""

    def __init__(
        self,
        store: BlocklistStore,
        *,
        operators: Mapping[str, OperatorSettings],
        settings: WebhookSettings | None = None,
        plan: NumberingPlan | None = None,
        client: httpx.Client | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.operators = {op: cfg for op, cfg in operators.items() if cfg.webhook_url is not None}
        self.settings = settings or WebhookSettings()
        self.plan = plan or load_numbering_plan()
        self._client = client or httpx.Client(timeout=self.settings.timeout_s)
        self._own_client = client is None
        self.rng = rng or random.Random()
        self.lease = Lease(store.engine, channel=CHANNEL, lease_s=self.settings.lease_s)

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def deliver_pending(self, now: dt.datetime | None = None) -> DeliveryReport:
        """One round: for each operator whose oldest pending row is due, POST rows in version
        order until one fails or ``batch_size`` rows were tried over all operators."""
        now = as_utc(now or utcnow())
        report = DeliveryReport()
        budget = self.settings.batch_size
        for operator, cfg in self.operators.items():
            if budget <= 0:
                break
            if not self.lease.acquire(operator):
                continue
            try:
                budget -= self._deliver_operator(operator, cfg, now=now, budget=budget, report=report)
            finally:
                self.lease.release(operator)
        return report

    def _deliver_operator(
        self, operator: str, cfg: OperatorSettings, *, now: dt.datetime, budget: int, report: DeliveryReport
    ) -> int:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_D.c.id, _D.c.entry_id, _D.c.attempts, _D.c.next_attempt_at)
                .where(_D.c.operator == operator, _D.c.status == "pending")
                .order_by(_D.c.entry_id)
                .limit(budget)
            ).all()
        if not rows or as_utc(rows[0].next_attempt_at) > now:
            return 0  # nothing to send, or the operator is in backoff
        entries = self.store.entries_by_version(r.entry_id for r in rows)
        tried = 0
        for row in rows:
            # renewed before every POST: a round longer than the lease would otherwise let another
            # process take the lease and send the same rows in parallel, out of order
            if not self.lease.renew(operator):
                log.warning("webhook %s: lease lapsed mid-round; the next round continues", operator)
                break
            tried += 1
            entry = entries[row.entry_id]
            body = json.dumps(entry_payload(entry, operator=operator, plan=self.plan), separators=(",", ":"))
            headers = {"Content-Type": "application/json", "Idempotency-Key": str(entry.version)}
            if cfg.webhook_token is not None:
                headers["Authorization"] = f"Bearer {cfg.webhook_token.get_secret_value()}"
            response: httpx.Response | None = None
            error: str | None = None
            try:
                response = self._client.post(str(cfg.webhook_url), content=body, headers=headers)
                if not response.is_success:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            attempts = row.attempts + 1
            code = response.status_code if response is not None else None
            if error is None:
                self._update(
                    row.id,
                    status="delivered",
                    attempts=attempts,
                    delivered_at=utcnow(),
                    last_status_code=code,
                    last_error=None,
                )
                report.delivered[operator] += 1
                metrics.WEBHOOK_ATTEMPTS.labels(operator=operator, result="delivered").inc()
                continue
            if attempts >= self.settings.max_attempts:
                self._update(row.id, status="failed", attempts=attempts, last_status_code=code, last_error=error)
                report.failed[operator] += 1
                metrics.WEBHOOK_ATTEMPTS.labels(operator=operator, result="failed").inc()
                log.warning(
                    "webhook %s: version %s failed after %d attempts (%s)", operator, entry.version, attempts, error
                )
                continue
            delay = backoff_s(attempts, settings=self.settings, rng=self.rng)
            retry_after = _retry_after_s(response)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.settings.backoff_max_s))
            self._update(
                row.id,
                attempts=attempts,
                last_status_code=code,
                last_error=error,
                next_attempt_at=now + dt.timedelta(seconds=delay),
            )
            report.retrying[operator] += 1
            metrics.WEBHOOK_ATTEMPTS.labels(operator=operator, result="retry").inc()
            break  # keep version order: the rest waits behind this row
        return tried

    def _update(self, row_id: int, **values: object) -> None:
        # one short transaction per row: a crash mid-round resends at most the row in flight
        with writer(self.store.engine).begin() as conn:
            conn.execute(sa.update(_D).where(_D.c.id == row_id).values(**values))

    def redeliver_failed(self, operator: str, *, now: dt.datetime | None = None) -> int:
        """Put an operator's failed rows back in the queue, due now; returns how many."""
        return redeliver_failed(self.store, operator, now=now)


def redeliver_failed(store: BlocklistStore, operator: str, *, now: dt.datetime | None = None) -> int:
    now = as_utc(now or utcnow())
    with writer(store.engine).begin() as conn:
        done = conn.execute(
            sa.update(_D)
            .where(_D.c.operator == operator, _D.c.status == "failed")
            .values(status="pending", attempts=0, next_attempt_at=now)
        )
        return int(done.rowcount or 0)


def delivery_counts(store: BlocklistStore, operator: str) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(_D.c.status, sa.func.count()).where(_D.c.operator == operator).group_by(_D.c.status)
        ).all()
    return {status: int(n) for status, n in rows}
