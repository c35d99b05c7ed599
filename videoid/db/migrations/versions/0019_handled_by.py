"""Who handled each session (``handled_by``): the operators who took its calls or
decided it, kept on the session, for the four-eyes rule of a supervisor's review (R15),
instead of being read back out of the transitions' actor strings. Existing sessions
get theirs from their transitions and decisions.

Revision ID: 0019
"""

import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identification_sessions") as batch:
        batch.add_column(sa.Column("handled_by", sa.Text, nullable=False, server_default="[]"))
    bind = op.get_bind()
    handled: dict[str, set[int]] = defaultdict(set)
    for session_id, actor in bind.execute(
        sa.text("SELECT session_id, actor FROM session_transitions WHERE actor LIKE 'operator:%'")
    ):
        operator = actor.split(":", 1)[1]
        if operator.isdigit():  # nothing else was ever written; never fail an upgrade
            handled[session_id].add(int(operator))
    for session_id, operator_id in bind.execute(
        sa.text("SELECT session_id, operator_id FROM decisions")
    ):
        handled[session_id].add(int(operator_id))
    for session_id, ids in handled.items():
        bind.execute(
            sa.text("UPDATE identification_sessions SET handled_by = :ids WHERE id = :id"),
            {"ids": json.dumps(sorted(ids)), "id": session_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("identification_sessions") as batch:
        batch.drop_column("handled_by")
