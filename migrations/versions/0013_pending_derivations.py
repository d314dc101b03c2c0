"""Messages whose call events are still to be derived, when deriving was deferred.

When the database falls behind the senders, the batch writer stores the raw messages alone
and lists them here as runs of consecutive ids (usually one row per batch), in the same
transaction; a catch-up derives their events and CDRs once the writer has time, and
deletes the rows. A downgrade forgets the list: run
`cdrecon rebuild` after it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_derivations",
        sa.Column("first_id", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("first_id", name="pk_pending_derivations"),
    )


def downgrade() -> None:
    op.drop_table("pending_derivations")
