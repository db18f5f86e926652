"""The blocklist schema (SQLAlchemy 2 ORM). Alembic migrations under ``migrations/`` create it;
``tests/test_blocklist_store.py`` checks that they agree.

- ``blocklist_entries``: the append-only log. One row per version; the id *is* the version, a
  strictly increasing global sequence handed out under a lock (``blocklist_sequence``) so that
  versions also commit in order and a reader following ``id > cursor`` never skips one.
- ``blocklist_state``: the current state per (number, scope), updated with every entry.
- ``detections``: every block- or review-level decision the store received (the evidence: why a
  number was flagged, by which model version), unique by the caller's idempotency key.
- ``reviews``: the analysts' queue of flags between the thresholds.
- ``allowlist``: registered business numbers and numbers analysts cleared.
- ``trunk_spoof_counts``: spoofed calls per ingress trunk.
- ``publish_state``: per channel and operator, the Kafka cursor and the deliverer's lease.
- ``webhook_deliveries``: the outbox, one row per (version, operator with a webhook).
- ``stream_batches``: one record per streaming micro-batch (counts, decisions, stage timings).

Room to grow: an analyst console resolves ``reviews`` (status, resolved_by, entry_id) and writes
entries with ``decided_by = 'analyst'``; appeals can get their own table pointing at entries; the
regulator's audit reads ``model_name``/``model_version`` on entries and detections and
``lifts_entry_id`` on unblocks (which block each unblock ended, and who ended it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from streaming.blocklist.db import UTCDateTime
from streaming.blocklist.decision import MAX_NUMBER_LEN

#: deterministic constraint names, the same in the models and the migrations
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: autoincrement ids: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ACTIONS = ("block", "unblock")
#: ``system``: expiry and allowlist changes, neither a model nor a person
DECIDED_BY = ("model", "analyst", "system")
#: ``watch``: needs more evidence; ``escalated``: waits for a supervisor (the console, 0003)
REVIEW_STATUSES = ("open", "confirmed", "overturned", "watch", "escalated")
#: reviews still waiting for a final decision: a new detection updates them instead of opening another
PENDING_REVIEW_STATUSES = ("open", "watch", "escalated")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
ALLOWLIST_SOURCES = ("registered_business", "analyst_cleared")
OUTCOMES = ("blocked", "already_blocked", "review", "allowed")

NUMBER_LEN = MAX_NUMBER_LEN
TRUNK_ID_LEN = 128
SCOPE_LEN = 64


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[str]: sa.JSON(),
    }


class EntrySequence(Base):
    """One row per counter; ``entry`` holds the last version handed out."""

    __tablename__ = "blocklist_sequence"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger)


class Entry(Base):
    __tablename__ = "blocklist_entries"
    __table_args__ = (
        sa.CheckConstraint(_in("action", ACTIONS), name="action"),
        sa.CheckConstraint(_in("decided_by", DECIDED_BY), name="decided_by"),
        sa.Index("ix_blocklist_entries_number_scope_id", "number", "scope", "id"),
        sa.Index("ix_blocklist_entries_model_version", "model_name", "model_version"),
    )

    #: the version: assigned from ``blocklist_sequence``, never by the database
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    number: Mapped[str] = mapped_column(sa.String(NUMBER_LEN))
    scope: Mapped[str] = mapped_column(sa.String(SCOPE_LEN))
    action: Mapped[str] = mapped_column(sa.String(16))
    fraud_type: Mapped[str | None] = mapped_column(sa.String(32))
    score: Mapped[float | None] = mapped_column(sa.Float)
    reasons: Mapped[list[str]] = mapped_column(default=list)
    model_name: Mapped[str | None] = mapped_column(sa.String(128))
    model_version: Mapped[str | None] = mapped_column(sa.String(64))
    decided_by: Mapped[str] = mapped_column(sa.String(16))
    #: the analyst's name, the model's name, or the system process
    actor: Mapped[str | None] = mapped_column(sa.String(128))
    #: the analyst's reason, or why the system acted
    note: Mapped[str | None] = mapped_column(sa.Text)
    #: the operator whose CDRs showed the behaviour
    reported_by: Mapped[str | None] = mapped_column(sa.String(32))
    idempotency_key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    #: on an unblock: the block entry it ended
    lifts_entry_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("blocklist_entries.id"))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]


class State(Base):
    """The current state of one (number, scope): what an operator's list holds after the
    latest version."""

    __tablename__ = "blocklist_state"
    __table_args__ = (sa.Index("ix_blocklist_state_active_expires_at", "active", "expires_at"),)

    number: Mapped[str] = mapped_column(sa.String(NUMBER_LEN), primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(SCOPE_LEN), primary_key=True)
    active: Mapped[bool] = mapped_column(sa.Boolean)
    version: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("blocklist_entries.id"))
    #: the block entry in force (``None`` once lifted)
    block_entry_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("blocklist_entries.id"))
    fraud_type: Mapped[str | None] = mapped_column(sa.String(32))
    expires_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime]


class Detection(Base):
    __tablename__ = "detections"
    __table_args__ = (
        sa.CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),
        sa.Index("ix_detections_number_scope", "number", "scope"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    number: Mapped[str] = mapped_column(sa.String(NUMBER_LEN))
    scope: Mapped[str] = mapped_column(sa.String(SCOPE_LEN))
    fraud_type: Mapped[str] = mapped_column(sa.String(32))
    score: Mapped[float] = mapped_column(sa.Float)
    reasons: Mapped[list[str]] = mapped_column(default=list)
    model_name: Mapped[str | None] = mapped_column(sa.String(128))
    model_version: Mapped[str | None] = mapped_column(sa.String(64))
    reported_by: Mapped[str | None] = mapped_column(sa.String(32))
    trunk_type: Mapped[str | None] = mapped_column(sa.String(32))
    trunk_id: Mapped[str | None] = mapped_column(sa.String(TRUNK_ID_LEN))
    #: the policy's one-line reason (threshold crossed, or the allowlist that won)
    why: Mapped[str] = mapped_column(sa.String(255))
    outcome: Mapped[str] = mapped_column(sa.String(16))
    entry_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("blocklist_entries.id"))
    review_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("reviews.id"))
    observed_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
    #: what an analyst checks the flag against, as the stream saw it: the feature row with its
    #: window bounds and the SIM's recent calls (``streaming.evidence``)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)


class Review(Base):
    """A flag between the thresholds. One open review per (number, scope, fraud type): a later
    detection raises its score and count instead of opening another."""

    __tablename__ = "reviews"
    __table_args__ = (
        sa.CheckConstraint(_in("status", REVIEW_STATUSES), name="status"),
        sa.Index("ix_reviews_status_created_at", "status", "created_at"),
        sa.Index("ix_reviews_number_scope", "number", "scope"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(sa.String(NUMBER_LEN))
    scope: Mapped[str] = mapped_column(sa.String(SCOPE_LEN))
    fraud_type: Mapped[str] = mapped_column(sa.String(32))
    #: the highest score seen while open, with its reasons and model
    score: Mapped[float] = mapped_column(sa.Float)
    reasons: Mapped[list[str]] = mapped_column(default=list)
    model_name: Mapped[str | None] = mapped_column(sa.String(128))
    model_version: Mapped[str | None] = mapped_column(sa.String(64))
    reported_by: Mapped[str | None] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    detections: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    resolved_at: Mapped[dt.datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(sa.String(128))
    resolution_note: Mapped[str | None] = mapped_column(sa.Text)
    #: the entry the resolution wrote (a confirmed block, or the unblock of an overturn)
    entry_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("blocklist_entries.id"))
    #: the analyst who took it ("assign to me")
    assigned_to: Mapped[str | None] = mapped_column(sa.String(128))


class AllowlistEntry(Base):
    """Numbers that are never blocked, whatever the score (emergency numbers and short codes
    come from the numbering plan and are not stored)."""

    __tablename__ = "allowlist"
    __table_args__ = (sa.CheckConstraint(_in("source", ALLOWLIST_SOURCES), name="source"),)

    number: Mapped[str] = mapped_column(sa.String(NUMBER_LEN), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    added_by: Mapped[str | None] = mapped_column(sa.String(128))
    note: Mapped[str | None] = mapped_column(sa.Text)
    request_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime]
    #: a clearance from an overturn lapses here; ``None``: permanent (a supervisor's decision)
    expires_at: Mapped[dt.datetime | None]


class TrunkSpoofCount(Base):
    """Spoofed calls per ingress trunk of the reporting operator: a trunk that keeps carrying
    spoofed CLIs is a partner to call to account."""

    __tablename__ = "trunk_spoof_counts"

    operator: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    trunk_type: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    trunk_id: Mapped[str] = mapped_column(sa.String(TRUNK_ID_LEN), primary_key=True)
    #: calls above the block threshold, and between the thresholds
    blocked_calls: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    review_calls: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    first_seen_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]


class PublishState(Base):
    """Per channel (``kafka``, ``webhook``) and operator: the Kafka cursor (last version sent
    and acknowledged) and a lease so that only one process publishes to an operator at a time."""

    __tablename__ = "publish_state"

    channel: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    operator: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    last_version: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(64))
    lease_until: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime]


class Delivery(Base):
    """The webhook outbox: written with the entry, in the same transaction."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("entry_id", "operator", name="uq_webhook_deliveries_entry_id_operator"),
        sa.CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
        sa.Index("ix_webhook_deliveries_operator_status_entry_id", "operator", "status", "entry_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("blocklist_entries.id"))
    operator: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[dt.datetime]
    last_error: Mapped[str | None] = mapped_column(sa.String(512))
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]


class StreamBatch(Base):
    """One record per streaming micro-batch; a batch that Spark re-runs overwrites its own."""

    __tablename__ = "stream_batches"

    query: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    batch_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    record: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    finished_at: Mapped[dt.datetime]


# -- the analyst console (migration 0003) ----------------------------------------------------------

ROLES = ("analyst", "supervisor", "regulator", "admin")
CONSOLE_ACTIONS = ("confirm", "overturn", "escalate", "watch", "note", "assign", "allowlist", "manual_block")
APPEAL_STATUSES = ("open", "upheld", "overturned")


class User(Base):
    """A console account; the password only as an argon2 hash."""

    __tablename__ = "users"
    __table_args__ = (sa.CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    failed_logins: Mapped[int] = mapped_column(sa.Integer, default=0)
    locked_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    last_login_at: Mapped[dt.datetime | None]


class ConsoleAction(Base):
    """One analyst decision or note on a number: who, when, why, and the entry it wrote.
    ``request_id`` (from the form) makes a resubmitted form harmless."""

    __tablename__ = "console_actions"
    __table_args__ = (
        sa.CheckConstraint(_in("action", CONSOLE_ACTIONS), name="action"),
        sa.Index("ix_console_actions_number_id", "number", "id"),
        sa.Index("ix_console_actions_actor_created_at", "actor", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    number: Mapped[str] = mapped_column(sa.String(NUMBER_LEN))
    action: Mapped[str] = mapped_column(sa.String(16))
    comment: Mapped[str] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(sa.String(64))
    review_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("reviews.id"))
    appeal_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("appeals.id"))
    entry_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("blocklist_entries.id"))
    model_version: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime]


class Appeal(Base):
    """A subscriber's dispute of a block, filed by an operator's customer care or an analyst."""

    __tablename__ = "appeals"
    __table_args__ = (
        sa.CheckConstraint(_in("status", APPEAL_STATUSES), name="status"),
        sa.UniqueConstraint("operator", "request_id", name="uq_appeals_operator_request_id"),
        sa.Index("ix_appeals_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(sa.String(NUMBER_LEN), index=True)
    #: the operator that filed it (``console`` for the form)
    operator: Mapped[str] = mapped_column(sa.String(32))
    request_id: Mapped[str] = mapped_column(sa.String(128))
    reason: Mapped[str] = mapped_column(sa.Text)
    filed_by: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    created_at: Mapped[dt.datetime]
    due_at: Mapped[dt.datetime]
    decided_by: Mapped[str | None] = mapped_column(sa.String(64))
    decided_at: Mapped[dt.datetime | None]
    outcome_comment: Mapped[str | None] = mapped_column(sa.Text)
    #: the unblock an overturned appeal wrote
    entry_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("blocklist_entries.id"))

class AuditRecord(Base):
    """The tamper-evident log (``streaming.blocklist.audit``): one record per state change, each
    holding its predecessor's hash and the SHA-256 of its own canonical form."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_at", "at"),)

    #: assigned by ``audit.append`` (head + 1) under the store's write lock, never by the database
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime]
    kind: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(sa.String(128))
    content: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class ModelDossier(Base):
    """The dossier of one registered model version (``models.dossier``), as logged to MLflow."""

    __tablename__ = "model_dossiers"

    registered_name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    markdown: Mapped[str] = mapped_column(sa.Text)
    #: SHA-256 of the canonical content, also in the ``model_registered`` audit record
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime]
