"""Index CDR start times: reconciliation reads a window a slice at a time by start.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cdrs_start_us", "cdrs", ["start_us"])


def downgrade() -> None:
    op.drop_index("ix_cdrs_start_us", table_name="cdrs")
