"""The consent's client address is sealed with the session's data key like the rest of
the personal data (an address identifies a person): the column becomes text, wide
enough for the sealed form. Existing addresses are sealed at the next start.

Revision ID: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite keeps any length in any column
        op.alter_column("consents", "client_address", type_=sa.Text)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE consents SET client_address = left(client_address, 64)")
        op.alter_column("consents", "client_address", type_=sa.String(64))
