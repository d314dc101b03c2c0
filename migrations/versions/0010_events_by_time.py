"""Key call events by (time, digest): an index that grows at its end, not at random.

An event's digest covers its body, which starts with the event's time, so (time_us, digest)
is exactly as unique as the digest alone. Events arrive roughly in time order, so new
entries land in the last pages of this index; a digest-only index took each one at a random
page, and once it outgrew the page cache every insert read and rewrote a page of it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_events_digest", table_name="events")
    op.create_index("ix_events_time_us_digest", "events", ["time_us", "digest"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_events_time_us_digest", table_name="events")
    op.create_index("ix_events_digest", "events", ["digest"], unique=True)
