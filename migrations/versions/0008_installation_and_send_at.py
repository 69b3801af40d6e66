"""installation id, email_messages.not_before, callers' keys in their own namespace

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

- ``installation``: one row, a random id made once here. It is mixed into every
  Message-ID, so two databases never produce the same one while every retry of
  one email keeps its own.
- ``email_messages.not_before``: a delayed email (``send_at=``/``delay=``) is
  never sent earlier, whichever job claims its row.
- An application's ``idempotency_key`` is stored as ``user:<key>``, apart from
  the keys `jobs` makes (``welcome:``, ``promotion:``, ``email:``): existing
  rows written by applications move there, so a retried enqueue still finds them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("installation_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_installation_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation")),
    )
    op.execute(
        "INSERT INTO installation (id, installation_id)"
        " VALUES (1, replace(gen_random_uuid()::text, '-', ''))"
    )
    op.add_column(
        "email_messages", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True)
    )
    # Keys `jobs` made: welcome:<its user>, promotion:<run>:<user> (with a run), email:<uuid>.
    op.execute(
        """
        UPDATE email_messages SET idempotency_key = 'user:' || idempotency_key
         WHERE promotion_run_id IS NULL
           AND idempotency_key NOT LIKE 'email:%'
           AND idempotency_key NOT LIKE 'user:%'
           AND idempotency_key IS DISTINCT FROM 'welcome:' || user_id::text
        """
    )


def downgrade() -> None:
    op.execute(
        "UPDATE email_messages SET idempotency_key = substr(idempotency_key, 6)"
        " WHERE idempotency_key LIKE 'user:%'"
    )
    op.drop_column("email_messages", "not_before")
    op.drop_table("installation")
