"""Personal data sealed at rest: per-owner data keys (``data_keys``), blind indexes of
the customers' contacts, and a mark on the search keys that are blind indexes.

The plain search keys of migration 0014 (a name, a document number) are cleared here;
everything else left in clear by older versions (onboarding results, contacts, call
items, decisions' reasons, customers' certificates) is sealed, and the search keys
derived again, at the next start, which has the keys this migration has not
(``Repository.seal_plain_rows``).

Revision ID: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("shredded_at", sa.Float, nullable=True),
    )
    op.add_column("customers", sa.Column("email_index", sa.String(64), nullable=True))
    op.add_column("customers", sa.Column("phone_index", sa.String(64), nullable=True))
    op.create_index("ix_customers_email_index", "customers", ["email_index"])
    op.create_index("ix_customers_phone_index", "customers", ["phone_index"])
    if op.get_bind().dialect.name != "sqlite":  # SQLite does not bound a VARCHAR
        # a sealed value is longer than the plain one
        op.alter_column("customers", "email", type_=sa.Text)
        op.alter_column("customers", "phone", type_=sa.Text)
    op.add_column(
        "session_search",
        sa.Column("blind", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.execute("UPDATE session_search SET name = '', document = ''")


def downgrade() -> None:
    op.drop_column("session_search", "blind")
    op.drop_index("ix_customers_phone_index", "customers")
    op.drop_index("ix_customers_email_index", "customers")
    op.drop_column("customers", "phone_index")
    op.drop_column("customers", "email_index")
    op.drop_table("data_keys")
