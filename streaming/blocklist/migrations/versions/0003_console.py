"""The analyst console: users, analysts' actions, appeals, review statuses ``watch`` and
``escalated`` with an assignee, and clearances that expire.

Revision ID: 0003_console
Revises: 0002_evidence_and_stream_batches
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_console"
down_revision = "0002_evidence_and_stream_batches"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_REVIEW = ("open", "confirmed", "overturned")
NEW_REVIEW = ("open", "confirmed", "overturned", "watch", "escalated")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_constraint("ck_reviews_status", type_="check")
        batch.create_check_constraint("ck_reviews_status", _in("status", NEW_REVIEW))
        batch.add_column(sa.Column("assigned_to", sa.String(128), nullable=True))
    with op.batch_alter_table("allowlist") as batch:
        batch.add_column(sa.Column("expires_at", TS, nullable=True))
    op.create_table(
        "users",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_login_at", TS, nullable=True),
        sa.CheckConstraint(_in("role", ("analyst", "supervisor", "regulator", "admin")), name="ck_users_role"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "appeals",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("operator", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("filed_by", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("outcome_comment", sa.Text(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(_in("status", ("open", "upheld", "overturned")), name="ck_appeals_status"),
        sa.ForeignKeyConstraint(["entry_id"], ["blocklist_entries.id"], name="fk_appeals_entry_id_blocklist_entries"),
        sa.PrimaryKeyConstraint("id", name="pk_appeals"),
        sa.UniqueConstraint("operator", "request_id", name="uq_appeals_operator_request_id"),
    )
    op.create_index("ix_appeals_status_due_at", "appeals", ["status", "due_at"])
    op.create_index("ix_appeals_number", "appeals", ["number"])
    actions = ("confirm", "overturn", "escalate", "watch", "note", "assign", "allowlist", "manual_block")
    op.create_table(
        "console_actions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("review_id", sa.BigInteger(), nullable=True),
        sa.Column("appeal_id", sa.BigInteger(), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint(_in("action", actions), name="ck_console_actions_action"),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], name="fk_console_actions_review_id_reviews"),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeals.id"], name="fk_console_actions_appeal_id_appeals"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["blocklist_entries.id"], name="fk_console_actions_entry_id_blocklist_entries"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_console_actions"),
        sa.UniqueConstraint("request_id", name="uq_console_actions_request_id"),
    )
    op.create_index("ix_console_actions_number_id", "console_actions", ["number", "id"])
    op.create_index("ix_console_actions_actor_created_at", "console_actions", ["actor", "created_at"])


def downgrade() -> None:
    op.drop_table("console_actions")
    op.drop_table("appeals")
    op.drop_table("users")
    with op.batch_alter_table("allowlist") as batch:
        batch.drop_column("expires_at")
    op.execute(sa.text("UPDATE reviews SET status = 'open' WHERE status IN ('watch', 'escalated')"))
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("assigned_to")
        batch.drop_constraint("ck_reviews_status", type_="check")
        batch.create_check_constraint("ck_reviews_status", _in("status", OLD_REVIEW))
