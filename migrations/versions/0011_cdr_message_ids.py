"""Each CDR lists the messages of its events; events are found by message, not by leg.

The index on `events.participant_id` took every event at a random page (participant ids
are random), and once it outgrew the page cache every insert read and rewrote a page of it.
A CDR now lists the raw messages its events were first seen in (`message_ids`), which is
what reassembling a leg needs, and events are indexed by `message_id`, which grows at its
end like the raw store.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        batch.add_column(sa.Column("message_ids", sa.Text, nullable=False, server_default=""))
    bind = op.get_bind()
    legs: dict[str, list[int]] = {}
    for pid, message_id in bind.execute(
        sa.text("SELECT participant_id, message_id FROM events WHERE participant_id IS NOT NULL")
    ):
        legs.setdefault(pid, []).append(int(message_id))
    if legs:
        bind.execute(
            sa.text("UPDATE cdrs SET message_ids = :ids WHERE id = :pid"),
            [{"pid": pid, "ids": ",".join(map(str, sorted(ids)))} for pid, ids in legs.items()],
        )
    op.create_index("ix_events_message_id", "events", ["message_id"])
    op.drop_index("ix_events_participant_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_participant_id", "events", ["participant_id"])
    op.drop_index("ix_events_message_id", table_name="events")
    with op.batch_alter_table("cdrs") as batch:
        batch.drop_column("message_ids")
