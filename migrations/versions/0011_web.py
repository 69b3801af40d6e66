"""web: worker_info, and the indexes behind the dashboard and `jobs list/show/emails`

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-01

Indexes on the big tables are built CONCURRENTLY (outside the migration
transaction). Those on procrastinate's tables carry the `jobs_` prefix, which
autogenerate ignores (see jobs.db.migrations).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROCRASTINATE_INDEXES = {
    # jobs list, newest first, filtered by status, queue or task (keyset on id)
    "jobs_procrastinate_jobs_status_id_idx": "procrastinate_jobs (status, id)",
    "jobs_procrastinate_jobs_queue_id_idx": "procrastinate_jobs (queue_name, id)",
    "jobs_procrastinate_jobs_task_id_idx": "procrastinate_jobs (task_name, id)",
    # the age filter: the first job deferred since a moment
    "jobs_procrastinate_events_deferred_at_idx": (
        "procrastinate_events (at) WHERE type = 'deferred'"
    ),
    # the delivery job carrying a ledger row
    "jobs_procrastinate_jobs_message_ids_idx": (
        "procrastinate_jobs USING gin ((args -> 'message_ids')) WHERE task_name = 'email.deliver'"
    ),
}


def upgrade() -> None:
    op.create_table(
        "worker_info",
        sa.Column("worker_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_info")),
    )
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_email_messages_to_address_lower",
            "email_messages",
            [sa.text("lower(to_address)"), "id"],
            unique=False,
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_email_messages_kind_id",
            "email_messages",
            ["kind", "id"],
            unique=False,
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_email_messages_unsent_status_id",
            "email_messages",
            ["status", "id"],
            unique=False,
            postgresql_where=sa.text("status <> 'sent'"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        for name, definition in PROCRASTINATE_INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in PROCRASTINATE_INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        for index in ("ix_email_messages_unsent_status_id", "ix_email_messages_kind_id"):
            op.drop_index(
                index, table_name="email_messages", postgresql_concurrently=True, if_exists=True
            )
        op.drop_index(
            "ix_email_messages_to_address_lower",
            table_name="email_messages",
            postgresql_concurrently=True,
            if_exists=True,
        )
    op.drop_table("worker_info")
