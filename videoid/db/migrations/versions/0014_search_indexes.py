"""Search that finds everything: the keys a compliance search matches per session
(name and document number as normalised keys, flags), and indexes for the order and
filters of a search. Existing sessions get their flags from their stored results; the
name and document keys, blind indexes since 0015, are derived at the next start.

Revision ID: 0014
"""

import json

import sqlalchemy as sa
from alembic import op

from videoid.db.session_search import STEPS, analysis_flags, step_flags

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    search = op.create_table(
        "session_search",
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("identification_sessions.id"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(256), nullable=False, server_default=""),
        sa.Column("document", sa.String(64), nullable=False, server_default=""),
        sa.Column("step_flags", sa.Text, nullable=False, server_default=""),
        sa.Column("call_flags", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_session_search_document", "session_search", ["document"])
    op.create_index(
        "ix_identification_sessions_created_at", "identification_sessions", ["created_at", "id"]
    )
    op.create_index(
        "ix_identification_sessions_operator_id", "identification_sessions", ["operator_id"]
    )
    op.create_index("ix_decisions_operator_id", "decisions", ["operator_id"])
    op.create_index("ix_call_items_kind", "call_items", ["kind", "session_id"])
    _backfill(search)


def _backfill(search: sa.Table) -> None:
    connection = op.get_bind()
    results: dict[str, dict[str, object]] = {}
    for session_id, name, value in connection.execute(
        sa.text("SELECT session_id, name, value FROM step_results WHERE name IN :names").bindparams(
            sa.bindparam("names", expanding=True)
        ),
        {"names": list(STEPS)},
    ):
        results.setdefault(session_id, {})[name] = json.loads(value)
    calls: dict[str, str] = {}
    for session_id, data in connection.execute(
        sa.text("SELECT session_id, data FROM call_items WHERE kind = 'analysis' ORDER BY id")
    ):
        calls[session_id] = analysis_flags(json.loads(data))  # the last one wins
    rows = []
    for session_id in sorted(results.keys() | calls.keys()):
        # the name and document keys are blind indexes, which need the index key:
        # the next start derives them (Repository.seal_plain_rows); nothing in clear here
        rows.append(
            {
                "session_id": session_id,
                "name": "",
                "document": "",
                "step_flags": step_flags(results.get(session_id, {})),
                "call_flags": calls.get(session_id, ""),
            }
        )
    for start in range(0, len(rows), _BATCH):
        op.bulk_insert(search, rows[start : start + _BATCH])


def downgrade() -> None:
    op.drop_index("ix_call_items_kind", "call_items")
    op.drop_index("ix_decisions_operator_id", "decisions")
    op.drop_index("ix_identification_sessions_operator_id", "identification_sessions")
    op.drop_index("ix_identification_sessions_created_at", "identification_sessions")
    op.drop_table("session_search")
