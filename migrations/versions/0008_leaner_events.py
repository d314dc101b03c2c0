"""Leaner call events: no JSON copy of the keys, and links only for repeated messages.

An event's keys are already in its raw message, which the event names (`message_id`); a
JSON copy doubled what ingest wrote per message. `event_messages` now holds only the
messages *beyond* that first one (the same line sent again, or backfilled after it was
received live), which on a healthy feed is almost none.

Downgrade puts the column back empty and the first links back; run `cdrecon rebuild` after
it to refill the keys.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM event_messages WHERE EXISTS (SELECT 1 FROM events "
        "WHERE events.digest = event_messages.digest "
        "AND events.message_id = event_messages.message_id)"
    )
    with op.batch_alter_table("events") as batch:
        batch.drop_column("fields")


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("fields", sa.Text, nullable=False, server_default="{}"))
    op.execute(
        "INSERT INTO event_messages (digest, message_id) SELECT digest, message_id FROM events"
    )
