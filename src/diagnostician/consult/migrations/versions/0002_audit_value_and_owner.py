"""The coded answer in the audit log, and the API key that owns each consultation (SQLiteStore's schema version 3).

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
    """Add audit.value (the answer as coded JSON, never free text; NULL for an undo and older rows) and consultations.owner."""
    inspector = sa.inspect(op.get_bind())
    # A SQLite file SQLiteStore already brought to version 3 has them.
    if "value" not in {c["name"] for c in inspector.get_columns("audit")}:
        op.add_column("audit", sa.Column("value", sa.Text, nullable=True))
    if "owner" not in {c["name"] for c in inspector.get_columns("consultations")}:
        op.add_column("consultations", sa.Column("owner", sa.Text, nullable=True))


def downgrade() -> None:
    """Drop both columns."""
    op.drop_column("consultations", "owner")
    op.drop_column("audit", "value")
