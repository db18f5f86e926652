"""Evidence on detections (feature row, window, recent calls) and the stream's batch records.

Revision ID: 0002_evidence_and_stream_batches
Revises: 0001_blocklist_initial
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_evidence_and_stream_batches"
down_revision = "0001_blocklist_initial"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("detections") as batch:
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
    op.create_table(
        "stream_batches",
        sa.Column("query", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("query", "batch_id", name="pk_stream_batches"),
    )


def downgrade() -> None:
    op.drop_table("stream_batches")
    with op.batch_alter_table("detections") as batch:
        batch.drop_column("evidence")
