"""The household record: members, diary, follow-ups, the member of a consultation, encryption metadata (SQLiteStore's schema version 4).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the household tables (IF NOT EXISTS: a SQLite file SQLiteStore brought to version 4 has them) and consultations.member_id."""
    if "member_id" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("consultations")}:
        op.add_column("consultations", sa.Column("member_id", sa.Text, nullable=True))
    op.create_table(
        "members",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "diary",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("member_id", sa.Text, sa.ForeignKey("members.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        if_not_exists=True,
    )
    op.create_index("diary_member", "diary", ["member_id", "at"], if_not_exists=True)
    op.create_table(
        "followups",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("consultation_id", sa.Text, sa.ForeignKey("consultations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("member_id", sa.Text, sa.ForeignKey("members.id", ondelete="CASCADE")),
        sa.Column("due_at", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        if_not_exists=True,
    )
    op.create_index("followups_due", "followups", ["status", "due_at"], if_not_exists=True)
    op.create_table(
        "record_meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        if_not_exists=True,
    )


def downgrade() -> None:
    """Drop the household tables (and the household record with them) and consultations.member_id."""
    for table in ("record_meta", "followups", "diary", "members"):
        op.drop_table(table)
    op.drop_column("consultations", "member_id")
