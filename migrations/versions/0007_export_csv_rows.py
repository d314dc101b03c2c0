"""Freeze each exported record's CSV row too, so a download only streams stored text.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_records") as batch:
        batch.add_column(sa.Column("csv_row", sa.Text, nullable=False, server_default=""))
    # Batches made before this revision get their rows rendered now, exactly as a download
    # rendered them then, so their bytes (and sha256) do not change.
    from app.export.formats import CsvEncoder

    bind = op.get_bind()
    encoder = CsvEncoder()
    rows = bind.execute(sa.text("SELECT export_id, seq, record FROM export_records")).fetchall()
    for export_id, seq, record in rows:
        bind.execute(
            sa.text(
                "UPDATE export_records SET csv_row = :line "
                "WHERE export_id = :export_id AND seq = :seq"
            ),
            {
                "line": encoder.rows([json.loads(record)]).decode(),
                "export_id": export_id,
                "seq": seq,
            },
        )


def downgrade() -> None:
    with op.batch_alter_table("export_records") as batch:
        batch.drop_column("csv_row")
