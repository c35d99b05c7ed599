"""Legal holds: a session under hold is not purged at the end of its retention, and a
purged session's mark.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("identification_sessions.id"),
            primary_key=True,
        ),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("placed_by", sa.String(64), nullable=False),
        sa.Column("placed_at", sa.Float, nullable=False),
    )
    op.add_column("identification_sessions", sa.Column("purged_at", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("identification_sessions", "purged_at")
    op.drop_table("legal_holds")
