"""One row the health check writes (at most every two seconds): a database that
answers reads but takes no writes (full, read-only after a fail-over, locked) is
reported, not called healthy.

Revision ID: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "health_probe",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "at": 0.0}])


def downgrade() -> None:
    op.drop_table("health_probe")
