"""fewer job indexes: two fewer entries for every job and every change of its status

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

A job's status is indexed, so each change of it (todo, doing, succeeded) writes
a new entry into every index on procrastinate_jobs, and a sign-up's job pays
for each index at its insert. Two of the dashboard's indexes held every job:

- ``jobs_procrastinate_jobs_queue_id_idx`` (queue, id): a busy queue's newest
  jobs come off the primary key backwards, a quiet one's off procrastinate's
  own index on the queue name.
- ``jobs_procrastinate_jobs_status_id_idx`` (status, id) now holds only the
  jobs that are neither waiting, running nor succeeded (failed, cancelled,
  aborting, aborted): waiting and running jobs are in procrastinate's index on
  (id, lock), and succeeded jobs, nearly every job, come off the primary key
  backwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE_INDEX = "jobs_procrastinate_jobs_queue_id_idx"
STATUS_INDEX = "jobs_procrastinate_jobs_status_id_idx"
ENDED_BADLY = "status NOT IN ('todo', 'doing', 'succeeded')"


def _rebuild_status_index(where: str) -> None:
    op.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {STATUS_INDEX}_new"
        f" ON procrastinate_jobs (status, id) {where}"
    )
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {STATUS_INDEX}")
    op.execute(f"ALTER INDEX {STATUS_INDEX}_new RENAME TO {STATUS_INDEX}")


def upgrade() -> None:
    with op.get_context().autocommit_block():
        _rebuild_status_index(f"WHERE {ENDED_BADLY}")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {QUEUE_INDEX}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {QUEUE_INDEX}"
            " ON procrastinate_jobs (queue_name, id)"
        )
        _rebuild_status_index("")
