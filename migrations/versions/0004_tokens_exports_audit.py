"""API tokens, export batches with their frozen records, and the audit log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger, nullable=True),
        sa.Column("last_used_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
    )
    op.create_index("ix_api_tokens_token_hash", "api_tokens", ["token_hash"], unique=True)
    op.create_index("ix_api_tokens_name", "api_tokens", ["name"], unique=True)
    op.create_table(
        "exports",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("filters", sa.Text, nullable=False),
        sa.Column("record_count", sa.Integer, nullable=False),
        sa.Column("total_duration", sa.BigInteger, nullable=False),
        sa.Column("first_start_us", sa.BigInteger, nullable=True),
        sa.Column("last_start_us", sa.BigInteger, nullable=True),
        sa.Column("sha256_csv", sa.String(64), nullable=False),
        sa.Column("sha256_jsonl", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_exports"),
    )
    op.create_index("ix_exports_idempotency_key", "exports", ["idempotency_key"], unique=True)
    op.create_table(
        "export_records",
        sa.Column("export_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("cdr_id", sa.String(128), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("export_id", "seq", name="pk_export_records"),
    )
    op.create_index("ix_export_records_cdr_id", "export_records", ["cdr_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", _ID, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("parameters", sa.Text, nullable=True),
        sa.Column("client", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at_us", "audit_log", ["at_us"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at_us", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_export_records_cdr_id", table_name="export_records")
    op.drop_table("export_records")
    op.drop_index("ix_exports_idempotency_key", table_name="exports")
    op.drop_table("exports")
    op.drop_index("ix_api_tokens_name", table_name="api_tokens")
    op.drop_index("ix_api_tokens_token_hash", table_name="api_tokens")
    op.drop_table("api_tokens")
