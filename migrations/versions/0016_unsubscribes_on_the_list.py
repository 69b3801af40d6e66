"""unsubscribes on the suppression list: one ``unsubscribe`` entry per unsubscribed user

An unsubscribe now also writes the user's address to ``suppressions`` with the
reason ``unsubscribe`` (promotions only). Users who unsubscribed before get
theirs here, dated from their unsubscribe; an address already on the list
keeps its entry.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCE = "unsubscribe link (recorded by migration 0016)"


def upgrade() -> None:
    # The list stores an address as `jobs.feedback.suppressions.normalize` does:
    # trimmed, without angle brackets, lower case.
    op.execute(
        f"""
        INSERT INTO suppressions (address, reason, source, first_event_at, last_event_at)
        SELECT DISTINCT ON (address) address, 'unsubscribe', '{SOURCE}',
               unsubscribed_at, unsubscribed_at
          FROM (SELECT lower(btrim(btrim(btrim(email), '<>'))) AS address, unsubscribed_at
                  FROM users WHERE unsubscribed_at IS NOT NULL) AS u
         WHERE address LIKE '_%@_%' AND address NOT LIKE '%@%@%' AND address NOT LIKE '% %'
         ORDER BY address, unsubscribed_at
        ON CONFLICT (address) DO NOTHING
        """
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM suppressions WHERE source = '{SOURCE}'")
