"""Certificates of the local CA: its own (root, issuing, timestamping) and the
customers', with their revocation; the keys are in the PKCS#11 token, named by
``key_label``.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False, index=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("identification_sessions.id"),
            nullable=True,
            index=True,
        ),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("key_label", sa.String(64), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("not_after", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("certificates")
