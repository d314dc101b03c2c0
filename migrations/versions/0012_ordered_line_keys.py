"""A backfilled line's key starts with the line's first bytes, so the unique index grows at
its end.

The key was a 16-byte hash of the line alone: random, so once the unique index outgrew the
page cache every backfilled line read and rewrote a page of it. It is now the line's first
24 bytes (its time, in every syslog file layout) followed by that same hash. Keys stored
before are rewritten the same way, so that a file imported before this revision is still
recognised when it is imported again.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The values of app/ingest/prepare.py at this revision, copied: a migration must not change
# when the application's code does.
_PREFIX = 24
_HASH = 16
_CHUNK = 10_000


def _rewrite(new_key: str) -> None:
    """Rewrite every stored line key with `new_key` ("ordered" or "hash"), a chunk at a time."""
    bind = op.get_bind()
    after = 0
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, raw, digest FROM messages WHERE digest IS NOT NULL AND id > :after "
                "ORDER BY id LIMIT :chunk"
            ),
            {"after": after, "chunk": _CHUNK},
        ).all()
        if not rows:
            return
        updates = []
        for message_id, raw, digest in rows:
            digest = bytes(digest)
            key = bytes(raw)[:_PREFIX] + digest if new_key == "ordered" else digest[-_HASH:]
            updates.append({"id": message_id, "key": key})
        bind.execute(sa.text("UPDATE messages SET digest = :key WHERE id = :id"), updates)
        after = rows[-1][0]


def upgrade() -> None:
    _rewrite("ordered")


def downgrade() -> None:
    _rewrite("hash")
