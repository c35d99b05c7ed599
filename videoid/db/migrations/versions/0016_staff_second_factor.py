"""Staff second factor (TOTP secret wrapped by the master key, the last accepted step,
recovery codes), pending login challenges, disabled accounts, and per-login last use
and second-factor proof (idle timeout, re-authentication). The unused leftovers of the
old lockout (``failed_logins``, ``locked_until``) go.

Revision ID: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "operators", sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("operators", sa.Column("totp_secret", sa.LargeBinary, nullable=True))
    op.add_column("operators", sa.Column("totp_last_step", sa.Integer, nullable=True))
    # plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): a batch copy would
    # drop and recreate the table that sessions and decisions refer to
    op.drop_column("operators", "failed_logins")
    op.drop_column("operators", "locked_until")
    op.add_column(
        "operator_logins", sa.Column("last_seen", sa.Float, nullable=False, server_default="0")
    )
    op.add_column(
        "operator_logins", sa.Column("verified_at", sa.Float, nullable=False, server_default="0")
    )
    # logins made with a password alone end: every staff member logs in again, with the
    # second factor (enrolling it then)
    op.execute("DELETE FROM operator_logins")
    op.create_table(
        "login_challenges",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "operator_id",
            sa.Integer,
            sa.ForeignKey("operators.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("secret", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_login_challenges_operator_id", "login_challenges", ["operator_id"])
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "operator_id",
            sa.Integer,
            sa.ForeignKey("operators.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
        sa.UniqueConstraint("operator_id", "code_hash"),
    )


def downgrade() -> None:
    op.drop_table("recovery_codes")
    op.drop_index("ix_login_challenges_operator_id", "login_challenges")
    op.drop_table("login_challenges")
    op.drop_column("operator_logins", "verified_at")
    op.drop_column("operator_logins", "last_seen")
    op.add_column("operators", sa.Column("locked_until", sa.Float, nullable=True))
    op.add_column(
        "operators",
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    )
    op.drop_column("operators", "totp_last_step")
    op.drop_column("operators", "totp_secret")
    op.drop_column("operators", "disabled")
