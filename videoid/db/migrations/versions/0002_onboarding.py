"""Onboarding: consents, encrypted objects, capture attempts, step results; customers'
person key (one person, one contact: R4).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _session_fk() -> sa.Column[str]:
    return sa.Column(
        "session_id",
        sa.String(36),
        sa.ForeignKey("identification_sessions.id"),
        nullable=False,
        index=True,
    )


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("person_key", sa.String(64), nullable=True))
    op.create_index("ix_customers_email", "customers", ["email"])
    op.create_index("ix_customers_phone", "customers", ["phone"])
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, primary_key=True),
        _session_fk(),
        sa.Column("document", sa.String(16), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "stored_objects",
        sa.Column("id", sa.String(32), primary_key=True),
        _session_fk(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("shredded_at", sa.Float, nullable=True),
    )
    op.create_table(
        "capture_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        _session_fk(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("problems", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "step_results",
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("identification_sessions.id"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("step_results", "capture_attempts", "stored_objects", "consents"):
        op.drop_table(table)
    op.drop_index("ix_customers_phone", "customers")
    op.drop_index("ix_customers_email", "customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("person_key")
