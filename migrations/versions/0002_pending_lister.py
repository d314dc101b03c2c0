"""Who listed each run of `pending_derivations`, so that a receiver's deriving process takes
the runs its own writer listed first (app/cdr/pending.py `Claims`; PostgreSQL writes it,
SQLite leaves it empty).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pending_derivations", sa.Column("lister", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pending_derivations") as batch:
        batch.drop_column("lister")
