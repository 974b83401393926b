"""The coded answer in the audit log (SQLiteStore's schema version 3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add audit.value: the answer as coded JSON (never free text), NULL for an undo and for rows written before."""
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("audit")}
    if "value" not in columns:  # a SQLite file SQLiteStore already brought to version 3 has it
        op.add_column("audit", sa.Column("value", sa.Text, nullable=True))


def downgrade() -> None:
    """Drop audit.value."""
    op.drop_column("audit", "value")
