"""leaner ledger indexes: two fewer entries for every transactional email

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

Every sign-up inserts a ledger row, and every delivery rewrites it (its status
is indexed, so the new row version gets an entry in every index). Two indexes
paid for that without serving anything another index does not:

- ``ix_email_messages_pending`` (id, pending rows): the pending rows are also
  in ``ix_email_messages_unsent_status_id`` (status, id, rows not sent), in
  the same order; the planner proves ``status = 'pending'`` implies it.
- ``ix_email_messages_promotion_run_id`` held every transactional row under
  NULL. It now holds promotion rows only: every query on it (``=`` or a join
  on the run, the foreign key's SET NULL) implies the column is not null.

Built and dropped CONCURRENTLY: a live ledger keeps taking writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_INDEX = "ix_email_messages_promotion_run_id"


def _rebuild_run_index(where: str) -> None:
    op.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {RUN_INDEX}_new"
        f" ON email_messages (promotion_run_id) {where}"
    )
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {RUN_INDEX}")
    op.execute(f"ALTER INDEX {RUN_INDEX}_new RENAME TO {RUN_INDEX}")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _rebuild_run_index("WHERE promotion_run_id IS NOT NULL")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_email_messages_pending")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_email_messages_pending"
            " ON email_messages (id) WHERE status = 'pending'"
        )
        _rebuild_run_index("")
