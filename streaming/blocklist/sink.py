"""What the streaming job calls from ``foreachBatch``: scored rows in, blocklist versions out.

>>> sink = BlocklistSink.from_settings(settings)  # doctest: +SKIP
>>> def on_batch(frame, batch_id):  # doctest: +SKIP
...     report = sink.process(sims=frame.toPandas(), batch_key=f"{query.id}:{batch_id}")
...     sink.distribute()   # expire lapsed blocks, publish to Kafka, deliver webhooks

``batch_key`` must be the same when Spark replays a micro-batch (the query id and the batch id
are), so a replay changes nothing. ``process`` and ``distribute`` are separate so a failing
channel (an operator's webhook down, Kafka unreachable) never fails the batch that decided: the
decisions are committed and every channel catches up from the store.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from features.errors import SimGuardError
from features.numbering import NumberingPlan, load_numbering_plan
from streaming.blocklist import metrics
from streaming.blocklist.batches import record_batch
from streaming.blocklist.numbers_file import read_numbers
from streaming.blocklist.publish_kafka import KafkaPublisher
from streaming.blocklist.publish_webhook import DeliveryReport, WebhookDispatcher
from streaming.blocklist.records import ApplyResult, EntryRecord
from streaming.blocklist.settings import BlocklistSettings
from streaming.blocklist.store import BlocklistStore
from streaming.policy import (
    MODEL_THRESHOLD,
    SIM_FRAUD_TYPES,
    PolicySettings,
    block_thresholds,
    count_actions,
    decide_calls,
    decide_sims,
)

log = logging.getLogger(__name__)


class _Topics(Protocol):
    blocklist_prefix: str


class _Kafka(Protocol):
    @property
    def topics(self) -> _Topics: ...

    def client_options(self) -> dict[str, Any]: ...


class SinkSettings(Protocol):
    """The parts of ``pipeline.config.Settings`` the blocklist needs (``streaming`` does not
    import ``pipeline``)."""

    @property
    def database_url(self) -> str: ...

    @property
    def policy(self) -> PolicySettings: ...

    @property
    def blocklist(self) -> BlocklistSettings: ...

    @property
    def kafka(self) -> _Kafka: ...


def open_store(
    settings: SinkSettings, *, plan: NumberingPlan | None = None, load_businesses: bool = True
) -> BlocklistStore:
    """Migrate the database, open the store, load the registered businesses if configured (and
    ``load_businesses``: one-off commands that only read skip it)."""
    bl = settings.blocklist
    plan = plan or load_numbering_plan()
    operators = bl.for_operators(plan.operators)
    store = BlocklistStore.open(
        settings.database_url,
        webhook_operators=[op for op, cfg in operators.items() if cfg.webhook_url is not None],
        plan=plan,
    )
    if load_businesses and bl.registered_businesses is not None:
        sync = store.sync_registered_businesses(
            read_numbers(bl.registered_businesses), source=str(bl.registered_businesses)
        )
        log.info(
            "registered businesses: %d added, %d removed, %d blocks lifted", sync.added, sync.removed, len(sync.entries)
        )
    return store


@dataclass
class BatchReport:
    apply: ApplyResult
    #: (fraud_type, action) -> decisions
    decisions: dict[tuple[str, str], int]


@dataclass
class DistributionReport:
    expired: list[EntryRecord] = field(default_factory=list)
    kafka: dict[str, int] = field(default_factory=dict)
    webhooks: DeliveryReport = field(default_factory=DeliveryReport)
    #: one line per channel that failed this round (it catches up on a later round)
    errors: list[str] = field(default_factory=list)


class BlocklistSink:
    def __init__(
        self,
        *,
        store: BlocklistStore,
        policy: PolicySettings,
        kafka: KafkaPublisher | None = None,
        webhooks: WebhookDispatcher | None = None,
        plan: NumberingPlan | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.kafka = kafka
        self.webhooks = webhooks
        self.plan = plan or store.plan

    @classmethod
    def from_settings(
        cls, settings: SinkSettings, *, publish_kafka: bool = True, webhooks: bool = True
    ) -> BlocklistSink:
        plan = load_numbering_plan()
        store = open_store(settings, plan=plan)
        bl = settings.blocklist
        operators = bl.for_operators(plan.operators)
        kafka = (
            KafkaPublisher(
                store,
                client_options=settings.kafka.client_options(),
                topic_prefix=settings.kafka.topics.blocklist_prefix,
                operators=list(operators),
                settings=bl.kafka,
                plan=plan,
            )
            if publish_kafka
            else None
        )
        dispatcher = WebhookDispatcher(store, operators=operators, settings=bl.webhook, plan=plan) if webhooks else None
        return cls(store=store, policy=settings.policy, kafka=kafka, webhooks=dispatcher, plan=plan)

    def close(self) -> None:
        if self.kafka is not None:
            self.kafka.close()
        if self.webhooks is not None:
            self.webhooks.close()
        self.store.close()

    def _candidates(self, sims: pd.DataFrame | None, calls: pd.DataFrame | None) -> set[str]:
        """Numbers of rows that can reach a decision: only these need an allowlist look-up."""
        numbers: set[str] = set()
        for frame, kind, column in ((sims, "sim", "number"), (calls, "call", "cli")):
            if frame is None or frame.empty or "score" not in frame.columns:
                continue
            threshold = None
            if MODEL_THRESHOLD in frame.columns:
                threshold = pd.to_numeric(frame[MODEL_THRESHOLD], errors="coerce").min()
                threshold = None if pd.isna(threshold) else float(threshold)
            low = self.min_score(kind, model_threshold=threshold)
            numbers.update(frame.loc[pd.to_numeric(frame["score"], errors="coerce") > low, column].dropna().astype(str))
        return numbers

    def process(
        self,
        *,
        batch_key: str,
        sims: pd.DataFrame | None = None,
        calls: pd.DataFrame | None = None,
        now: dt.datetime | None = None,
    ) -> BatchReport:
        """Decide and record one micro-batch of scored per-SIM rows and/or scored trunk calls."""
        allowlist = self.store.allowlist_for(self._candidates(sims, calls))
        decisions = []
        if sims is not None:
            decisions += decide_sims(sims, policy=self.policy, allowlist=allowlist, batch_key=f"{batch_key}:sim")
        if calls is not None:
            decisions += decide_calls(calls, policy=self.policy, allowlist=allowlist, batch_key=f"{batch_key}:call")
        counts = count_actions(decisions)
        result = self.store.apply_decisions(decisions, now=now)
        # counted after the commit, and not again for a replayed batch
        if result.replayed < len(decisions):
            for (ftype, action), n in counts.items():
                metrics.DECISIONS.labels(fraud_type=ftype, action=action).inc(n)
        metrics.REPLAYED.inc(result.replayed)
        return BatchReport(apply=result, decisions=counts)

    # -- the streaming job's ``DecisionSink`` protocol (streaming/job.py) -------------------------

    def min_score(self, kind: str, *, model_threshold: float | None = None) -> float:
        """Rows scoring at or below this can only be allowed (``kind``: ``sim`` or ``call``);
        ``model_threshold``: the scoring version's validated threshold, which is the block
        threshold of the fraud types whose ``block_above`` is null."""
        if kind == "sim":
            return min(self.policy.for_type(t).lowest(model_threshold) for t in SIM_FRAUD_TYPES)
        if kind == "call":
            return self.policy.spoofed_call.lowest(model_threshold)
        raise ValueError(f"unknown kind {kind!r}: 'sim' or 'call'")

    def block_thresholds(self, rows: pd.DataFrame) -> np.ndarray:
        """Per scored row: the score above which the policy blocks it."""
        return block_thresholds(rows, policy=self.policy)

    def apply(self, candidates: pd.DataFrame, *, kind: str, query: str, batch_id: int) -> dict[str, int]:
        """Decide and store one micro-batch's candidates; returns ``{"block:simbox": n, ...}``.

        Accepts the job's column names: per-SIM rows may name the number ``entity`` and per-call
        rows the CLI ``a_number``. ``query`` should identify the checkpoint (e.g. ``sim@<query
        id>``): a new checkpoint restarts batch ids at 0.
        """
        frame = _normalise(candidates, kind=kind)
        key = f"{query}:{batch_id}"
        report = self.process(
            batch_key=key, sims=frame if kind == "sim" else None, calls=frame if kind == "call" else None
        )
        return {f"{action}:{ftype}": n for (ftype, action), n in sorted(report.decisions.items())}

    def record_batch(self, query: str, batch_id: int, record: dict[str, Any]) -> None:
        record_batch(self.store.engine, query, batch_id, record)

    def distribute(self, now: dt.datetime | None = None) -> DistributionReport:
        """Expire lapsed blocks, publish new versions to Kafka, deliver due webhooks. A channel
        that fails is reported, logged and retried on the next call; it never raises."""
        report = DistributionReport()
        # any failure, a database hiccup included, is this round's problem only: the store
        # keeps what must be sent, and the next round starts from there
        try:
            report.expired = self.store.expire(now)
        except Exception as exc:
            report.errors.append(f"expiry: {_one_line(exc)}")
        if self.kafka is not None:
            try:
                report.kafka = self.kafka.publish()
            except Exception as exc:
                report.errors.append(f"kafka: {_one_line(exc)}")
        if self.webhooks is not None:
            try:
                report.webhooks = self.webhooks.deliver_pending(now)
            except Exception as exc:
                report.errors.append(f"webhooks: {_one_line(exc)}")
        for line in report.errors:
            log.warning("blocklist distribution: %s", line)
        return report


def _normalise(frame: pd.DataFrame, *, kind: str) -> pd.DataFrame:
    renames = {"sim": {"entity": "number"}, "call": {"a_number": "cli"}}.get(kind)
    if renames is None:
        raise ValueError(f"unknown kind {kind!r}: 'sim' or 'call'")
    out = frame.rename(columns={k: v for k, v in renames.items() if v not in frame.columns})
    for column in ("operator", "model_name"):
        if column not in out.columns:
            out = out.assign(**{column: None})
    return out


def _one_line(exc: Exception) -> str:
    if isinstance(exc, SimGuardError):
        return str(exc)
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]
