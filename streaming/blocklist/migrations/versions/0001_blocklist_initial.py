"""Blocklist: versioned entries, current state, detections, reviews, allowlist, trunk counts,
publishing cursors and the webhook outbox.

Revision ID: 0001_blocklist_initial
Revises:
Create Date: 2026-11-02

Portable DDL only (SQLite and PostgreSQL): no enums, no partial indexes, JSON as ``sa.JSON``,
times as ``timestamp with time zone`` (UTC).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_blocklist_initial"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "blocklist_sequence",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_blocklist_sequence"),
    )
    op.bulk_insert(
        sa.table("blocklist_sequence", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
        [{"name": "entry", "value": 0}],
    )

    op.create_table(
        "blocklist_entries",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("fraud_type", sa.String(32), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("decided_by", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reported_by", sa.String(32), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("lifts_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_blocklist_entries"),
        sa.UniqueConstraint("idempotency_key", name="uq_blocklist_entries_idempotency_key"),
        sa.ForeignKeyConstraint(
            ["lifts_entry_id"], ["blocklist_entries.id"], name="fk_blocklist_entries_lifts_entry_id_blocklist_entries"
        ),
        sa.CheckConstraint(_in("action", ("block", "unblock")), name="ck_blocklist_entries_action"),
        sa.CheckConstraint(_in("decided_by", ("model", "analyst", "system")), name="ck_blocklist_entries_decided_by"),
    )
    op.create_index("ix_blocklist_entries_number_scope_id", "blocklist_entries", ["number", "scope", "id"])
    op.create_index("ix_blocklist_entries_model_version", "blocklist_entries", ["model_name", "model_version"])

    op.create_table(
        "blocklist_state",
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("block_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("fraud_type", sa.String(32), nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("number", "scope", name="pk_blocklist_state"),
        sa.ForeignKeyConstraint(
            ["version"], ["blocklist_entries.id"], name="fk_blocklist_state_version_blocklist_entries"
        ),
        sa.ForeignKeyConstraint(
            ["block_entry_id"], ["blocklist_entries.id"], name="fk_blocklist_state_block_entry_id_blocklist_entries"
        ),
    )
    op.create_index("ix_blocklist_state_active_expires_at", "blocklist_state", ["active", "expires_at"])

    op.create_table(
        "reviews",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("fraud_type", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("reported_by", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detections", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.ForeignKeyConstraint(["entry_id"], ["blocklist_entries.id"], name="fk_reviews_entry_id_blocklist_entries"),
        sa.CheckConstraint(_in("status", ("open", "confirmed", "overturned")), name="ck_reviews_status"),
    )
    op.create_index("ix_reviews_status_created_at", "reviews", ["status", "created_at"])
    op.create_index("ix_reviews_number_scope", "reviews", ["number", "scope"])

    op.create_table(
        "detections",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("fraud_type", sa.String(32), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("reported_by", sa.String(32), nullable=True),
        sa.Column("trunk_type", sa.String(32), nullable=True),
        sa.Column("trunk_id", sa.String(128), nullable=True),
        sa.Column("why", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("review_id", sa.BigInteger(), nullable=True),
        sa.Column("observed_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_detections"),
        sa.UniqueConstraint("idempotency_key", name="uq_detections_idempotency_key"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["blocklist_entries.id"], name="fk_detections_entry_id_blocklist_entries"
        ),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], name="fk_detections_review_id_reviews"),
        sa.CheckConstraint(
            _in("outcome", ("blocked", "already_blocked", "review", "allowed")), name="ck_detections_outcome"
        ),
    )
    op.create_index("ix_detections_number_scope", "detections", ["number", "scope"])

    op.create_table(
        "allowlist",
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("number", "source", name="pk_allowlist"),
        sa.CheckConstraint(_in("source", ("registered_business", "analyst_cleared")), name="ck_allowlist_source"),
    )

    op.create_table(
        "trunk_spoof_counts",
        sa.Column("operator", sa.String(32), nullable=False),
        sa.Column("trunk_type", sa.String(32), nullable=False),
        sa.Column("trunk_id", sa.String(128), nullable=False),
        sa.Column("blocked_calls", sa.BigInteger(), nullable=False),
        sa.Column("review_calls", sa.BigInteger(), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("operator", "trunk_type", "trunk_id", name="pk_trunk_spoof_counts"),
    )

    op.create_table(
        "publish_state",
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("operator", sa.String(32), nullable=False),
        sa.Column("last_version", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("channel", "operator", name="pk_publish_state"),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("operator", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("entry_id", "operator", name="uq_webhook_deliveries_entry_id_operator"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["blocklist_entries.id"], name="fk_webhook_deliveries_entry_id_blocklist_entries"
        ),
        sa.CheckConstraint(_in("status", ("pending", "delivered", "failed")), name="ck_webhook_deliveries_status"),
    )
    op.create_index(
        "ix_webhook_deliveries_operator_status_entry_id", "webhook_deliveries", ["operator", "status", "entry_id"]
    )


def downgrade() -> None:
    for table in (
        "webhook_deliveries",
        "publish_state",
        "trunk_spoof_counts",
        "allowlist",
        "detections",
        "reviews",
        "blocklist_state",
        "blocklist_entries",
        "blocklist_sequence",
    ):
        op.drop_table(table)
