"""The initial schema: consultations, answers log, audit log, API keys (SQLiteStore's schema version 2).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables; IF NOT EXISTS, so a SQLite file SQLiteStore created itself is only stamped."""
    postgres = op.get_bind().dialect.name == "postgresql"

    def seq() -> list[sa.Column]:
        # Insertion order of answer and audit rows: SQLite has its rowid, PostgreSQL needs a column.
        return [sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False, unique=True)] if postgres else []

    # Timestamps are ISO 8601 UTC text and JSON is text, as in SQLite: the store's SQL is shared.
    op.create_table(
        "consultations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("pack_name", sa.Text, nullable=False),
        sa.Column("pack_version", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        if_not_exists=True,
    )
    op.create_index("consultations_updated", "consultations", ["updated_at"], if_not_exists=True)
    op.create_table(
        "answers",
        sa.Column("consultation_id", sa.Text, sa.ForeignKey("consultations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("question_id", sa.Text, nullable=False),
        sa.Column("finding", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("undone", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Text, nullable=False),
        *seq(),
        sa.PrimaryKeyConstraint("consultation_id", "question_id"),
        if_not_exists=True,
    )
    op.create_table(
        "audit",
        sa.Column("consultation_id", sa.Text, sa.ForeignKey("consultations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("pack_version", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("finding", sa.Text, nullable=False),
        sa.Column("triage_level", sa.Text, nullable=False),
        sa.Column("key_name", sa.Text),
        *seq(),
        if_not_exists=True,
    )
    op.create_index("audit_consultation", "audit", ["consultation_id"], if_not_exists=True)
    op.create_table(
        "api_keys",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("rate_limit", sa.Integer),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("revoked_at", sa.Text),
        if_not_exists=True,
    )
    if not postgres:
        op.execute("PRAGMA user_version = 2")  # what SQLiteStore checks: this file needs no schema of its own


def downgrade() -> None:
    """Drop every table (and every consultation with them)."""
    for table in ("api_keys", "audit", "answers", "consultations"):
        op.drop_table(table)
