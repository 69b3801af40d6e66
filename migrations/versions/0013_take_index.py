"""take index: waiting transactional delivery jobs, in the order they are taken

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

A delivery job takes waiting one-email transactional jobs in procrastinate's
order (priority, then id). Without an index that holds exactly those jobs in
that order, a planner whose statistics predate a burst (a fresh installation, a
table analyzed while the queue was empty) reads and sorts the whole backlog on
every take. The partial index names the queue, the task and the lock as the
take does (`jobs.db.queue_sql.TAKE_TRANSACTIONAL_JOBS`), so it is chosen from
the query text alone. Autoanalyze on procrastinate_jobs then follows the
number of rows changed rather than a fraction of the table, so procrastinate's
own fetch sees a burst's backlog within an autovacuum round.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TAKE_INDEX = "jobs_procrastinate_jobs_take_idx"
ANALYZE_THRESHOLD = 1000  # rows changed between autoanalyzes of procrastinate_jobs


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {TAKE_INDEX}"
            " ON procrastinate_jobs (priority DESC, id)"
            " WHERE status = 'todo' AND queue_name = 'email'"
            " AND task_name = 'email.deliver' AND lock IS NULL"
        )
    op.execute(
        "ALTER TABLE procrastinate_jobs SET (autovacuum_analyze_scale_factor = 0,"
        f" autovacuum_analyze_threshold = {ANALYZE_THRESHOLD})"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE procrastinate_jobs"
        " RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)"
    )
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {TAKE_INDEX}")
