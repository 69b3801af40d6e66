"""deliverability: suppressions, feedback events, paused runs, slowed budgets

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Adds the suppression list, the raw bounce/complaint events (unique per
provider event id), `email_messages.feedback`, the circuit breaker's columns on
`promotion_runs` and `mail_rate_limits.slowed_until`. Every new column is
nullable or has a constant default, so adding it rewrites no table; the index
that matches reports to ledger rows by Message-ID is built CONCURRENTLY, so
upgrading a live database never blocks enqueueing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = ("hard_bounce", "complaint", "unsubscribe", "manual")


def _zero(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column(
            "reason",
            sa.String(16),
            sa.CheckConstraint(
                "reason IN ({})".format(", ".join(f"'{r}'" for r in REASONS)), name="reason"
            ),
            nullable=False,
        ),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column(
            "first_event_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_event_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("events", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "feedback_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("email_message_id", sa.BigInteger(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["email_message_id"],
            ["email_messages.id"],
            name=op.f("fk_feedback_events_email_message_id_email_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_events")),
        sa.UniqueConstraint(
            "provider", "event_id", name=op.f("uq_feedback_events_provider_event_id")
        ),
    )
    op.create_index(
        op.f("ix_feedback_events_email_message_id"), "feedback_events", ["email_message_id"]
    )
    op.create_index(
        "ix_feedback_events_address_kind_received_at",
        "feedback_events",
        ["address", "kind", "received_at"],
    )
    op.add_column("email_messages", sa.Column("feedback", sa.Text(), nullable=True))
    for name in ("paused_at", "cancelled_at"):
        op.add_column("promotion_runs", sa.Column(name, sa.DateTime(timezone=True)))
    op.add_column("promotion_runs", sa.Column("pause_reason", sa.Text(), nullable=True))
    for name in ("baseline_sample", "baseline_bounces", "baseline_complaints"):
        op.add_column("promotion_runs", _zero(name))
    op.add_column("mail_rate_limits", sa.Column("slowed_until", sa.DateTime(timezone=True)))
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_email_messages_message_id",
            "email_messages",
            ["message_id"],
            postgresql_where=sa.text("message_id IS NOT NULL"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_email_messages_message_id",
            table_name="email_messages",
            postgresql_concurrently=True,
            if_exists=True,
        )
    op.drop_column("mail_rate_limits", "slowed_until")
    for name in (
        "baseline_complaints",
        "baseline_bounces",
        "baseline_sample",
        "pause_reason",
        "cancelled_at",
        "paused_at",
    ):
        op.drop_column("promotion_runs", name)
    op.drop_column("email_messages", "feedback")
    op.drop_table("feedback_events")
    op.drop_table("suppressions")
