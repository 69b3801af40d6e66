"""promotions: campaigns, promotion_runs, unsubscribe, ledger headers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The promotion of the original Celery design, as the seeded default campaign.
DEFAULT_CAMPAIGN = {
    "name": "default",
    "subject": "Special Promotion Just For You!",
    "title": "Special Offer Today!",
    "content": "Get 50% off on all products!",
    "link_path": "/promotions",
}


def upgrade() -> None:
    op.add_column("users", sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True))
    campaigns = op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("link_path", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )
    op.bulk_insert(campaigns, [DEFAULT_CAMPAIGN])
    op.create_table(
        "promotion_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_user_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_users", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("queued", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_promotion_runs_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion_runs")),
        sa.UniqueConstraint(
            "campaign_id", "period", name=op.f("uq_promotion_runs_campaign_id_period")
        ),
    )
    op.add_column(
        "email_messages",
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column("email_messages", sa.Column("promotion_run_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_email_messages_promotion_run_id_promotion_runs"),
        "email_messages",
        "promotion_runs",
        ["promotion_run_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        op.f("ix_email_messages_promotion_run_id"),
        "email_messages",
        ["promotion_run_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_email_messages_promotion_run_id"), table_name="email_messages")
    op.drop_constraint(
        op.f("fk_email_messages_promotion_run_id_promotion_runs"),
        "email_messages",
        type_="foreignkey",
    )
    op.drop_column("email_messages", "promotion_run_id")
    op.drop_column("email_messages", "headers")
    op.drop_table("promotion_runs")
    op.drop_table("campaigns")
    op.drop_column("users", "unsubscribed_at")
