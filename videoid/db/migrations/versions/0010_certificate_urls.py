"""The base of the CRL, OCSP and CA certificate addresses written in each certificate
(``ca.public_url`` when it was issued): the server keeps answering them after the
setting or the listening port changes.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("ca_url", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("ca_url")
