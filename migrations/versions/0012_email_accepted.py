"""email_accepted: messages the SMTP server accepted, before their ledger row says so

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

A delivery job records outcomes in its own transaction; this journal is written
at once beside it, so that no acceptance is forgotten when that transaction is
lost (a killed worker, a database restart) and a retry never resends it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_accepted",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_accepted")),
    )


def downgrade() -> None:
    op.drop_table("email_accepted")
