"""email_messages.failure_kind: why a row failed, as data

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

`jobs retry-failed` used to decide which failed rows it may resend by matching
prefixes of `last_error`; it now reads `failure_kind`. Existing failed rows are
classified from those same prefixes; `last_error` stays for humans.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("rejected", "invalid", "transient_exhausted", "worker_died", "cancelled")


def upgrade() -> None:
    op.add_column(
        "email_messages",
        sa.Column(
            "failure_kind",
            sa.String(32),
            sa.CheckConstraint(
                "failure_kind IN ({})".format(", ".join(f"'{k}'" for k in KINDS)),
                name="failure_kind",
            ),
        ),
    )
    # A permanent refusal carries the server's 5xx code; anything else that
    # failed on its own could not be built (template, context, address).
    op.execute(
        """
        UPDATE email_messages SET failure_kind = CASE
            WHEN last_error LIKE 'transient, retries exhausted: %' THEN 'transient_exhausted'
            WHEN last_error LIKE 'worker died %' THEN 'worker_died'
            WHEN last_error LIKE 'cancelled: %' THEN 'cancelled'
            WHEN last_error ~ '(^|\\D)5\\d\\d\\s' OR last_error LIKE 'SMTP%' THEN 'rejected'
            ELSE 'invalid'
        END
        WHERE status = 'failed'
        """
    )


def downgrade() -> None:
    op.drop_column("email_messages", "failure_kind")
