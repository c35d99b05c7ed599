"""The signature PIN and PUK of each customer's key: Argon2id hashes and the retry
counters (SoftHSM keeps none; these survive reconnections and restarts).

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signature_pins",
        sa.Column("serial", sa.String(40), sa.ForeignKey("certificates.serial"), primary_key=True),
        sa.Column("pin_hash", sa.String(255), nullable=False),
        sa.Column("puk_hash", sa.String(255), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("puk_failures", sa.Integer, nullable=False),
        sa.Column("locked_at", sa.Float, nullable=True),
        sa.Column("blocked_at", sa.Float, nullable=True),
        sa.Column("changed_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signature_pins")
