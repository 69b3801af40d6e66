"""operations: job_recoveries, indexes for status/metrics/retention

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Indexes on the big, busy tables are built CONCURRENTLY (outside the migration
transaction), so upgrading a live database never blocks deferring or fetching
jobs. The ones on procrastinate's tables carry a `jobs_` prefix: they are ours,
not procrastinate's, and autogenerate ignores them (see jobs.db.migrations).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Final event types (retention) plus retries (`jobs status` rates).
_OUTCOMES = "'succeeded', 'failed', 'cancelled', 'aborted', 'deferred_for_retry'"

PROCRASTINATE_INDEXES = {
    # queue depth and lag: todo/doing per queue, oldest due first (index-only scans)
    "jobs_procrastinate_jobs_active_idx": (
        "procrastinate_jobs (queue_name, status, scheduled_at, id) "
        "WHERE status IN ('todo', 'doing')"
    ),
    # failed jobs per queue/task: `jobs retry-failed`, the failed gauge
    "jobs_procrastinate_jobs_failed_idx": (
        "procrastinate_jobs (queue_name, task_name) WHERE status = 'failed'"
    ),
    # outcomes by time: rates over 1 h / 24 h, and retention's oldest-first walk
    "jobs_procrastinate_events_outcome_at_idx": (
        f"procrastinate_events (at, id) WHERE type IN ({_OUTCOMES})"
    ),
}


def upgrade() -> None:
    op.create_table(
        "job_recoveries",
        sa.Column("job_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("recoveries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "last_recovered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_recoveries")),
    )
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_email_messages_created_at_status",
            "email_messages",
            ["created_at", "status"],
            unique=False,
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_email_messages_context_expiry",
            "email_messages",
            ["created_at"],
            unique=False,
            postgresql_where=sa.text("context IS NOT NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        for name, definition in PROCRASTINATE_INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in PROCRASTINATE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.drop_index(
            "ix_email_messages_context_expiry",
            table_name="email_messages",
            postgresql_concurrently=True,
            if_exists=True,
        )
        op.drop_index(
            "ix_email_messages_created_at_status",
            table_name="email_messages",
            postgresql_concurrently=True,
            if_exists=True,
        )
    op.drop_table("job_recoveries")
