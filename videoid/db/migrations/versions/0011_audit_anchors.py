"""The audit log's anchors: its head, signed by a key in the token and timestamped, at
every evidence seal and at least every ``audit.anchor_minutes``.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_anchors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("timestamp", sa.LargeBinary, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_anchors")
