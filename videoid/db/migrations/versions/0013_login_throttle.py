"""Login attempts counted per username and per client address in the database, so that
the throttle holds across processes and parallel requests.

Revision ID: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("free_at", sa.Float, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_login_throttle_at", "login_throttle", ["at"])


def downgrade() -> None:
    op.drop_index("ix_login_throttle_at", "login_throttle")
    op.drop_table("login_throttle")
