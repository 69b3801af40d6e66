"""promotion_run_counts: the circuit breaker's counts, kept by PostgreSQL

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

The breaker (`jobs.feedback.breaker`) read every ledger row of a run on each
check. Now statement-level AFTER UPDATE and AFTER DELETE triggers on
`email_messages` add what each statement changed (new rows' contribution minus
old rows', read from the transition tables) to `promotion_run_counts`, and a
check sums a run's few counter rows. A statement's counts go to the shard
``pg_backend_pid() % 16``, so two workers recording batches of the same run do
not wait for each other on one row. A statement on rows of no run (transactional
email) stops after one query on its transition tables; the upsert is skipped
when the counts do not change (a dropped context, an attempt that left the row
pending).

No INSERT trigger: a new row is pending, with no feedback, and counts nothing,
so the sign-up path, which inserts rows, pays for no trigger. Deleting a run
sets its rows' run to NULL: the trigger skips runs that no longer exist, and
the run's counter rows go with it (ON DELETE CASCADE).

The counts of existing runs are filled in in the same transaction, after the
triggers are created: creating a trigger locks out writes to `email_messages`
until the commit, so no change falls between the back-fill and the triggers
(writes, sign-ups' inserts too, wait for the back-fill's scan of the ledger).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARDS = 16

# What each counter counts: the breaker's sample, bounces and complaints, and
# the sent, failed and refused counts `jobs status`, /metrics and the dashboard show.
COUNTERS = {
    "sample": "status = 'sent' OR failure_kind = 'rejected'",
    "bounces": "failure_kind = 'rejected' OR feedback = 'hard_bounce'",
    "complaints": "feedback = 'complaint'",
    "sent": "status = 'sent'",
    "failed": "status = 'failed'",
    "refused": "failure_kind = 'rejected'",
}
NAMES = ", ".join(COUNTERS)

# A set of ledger rows' counts per run, negated with sign "-". Rows that count
# nothing are dropped first: the pending ones, a batch's rows before it sends.
_COUNTS = (
    "SELECT promotion_run_id AS run_id, "
    + ", ".join(
        f"{{sign}}count(*) FILTER (WHERE {rule}) AS {name}" for name, rule in COUNTERS.items()
    )
    + """
      FROM {rows}
     WHERE promotion_run_id IS NOT NULL
       AND (status IN ('sent', 'failed') OR failure_kind = 'rejected'
            OR feedback IN ('hard_bounce', 'complaint'))
     GROUP BY promotion_run_id
"""
)


def _add(*parts: str) -> str:
    """The statement adding the sum of ``parts`` (`_COUNTS` queries) to the counters."""
    union = "\n UNION ALL ".join(parts)
    sums = ", ".join(f"sum({name})::bigint AS {name}" for name in COUNTERS)
    changed = " OR ".join(f"d.{name} <> 0" for name in COUNTERS)
    added = ", ".join(f"{name} = c.{name} + excluded.{name}" for name in COUNTERS)
    return f"""
    INSERT INTO promotion_run_counts AS c (run_id, shard, {NAMES})
    SELECT d.run_id, pg_backend_pid() % {SHARDS}, {", ".join(f"d.{n}" for n in COUNTERS)}
      FROM (SELECT run_id, {sums} FROM ({union}) AS t GROUP BY run_id) AS d
     WHERE ({changed})
       AND EXISTS (SELECT FROM promotion_runs AS r WHERE r.id = d.run_id)
     ORDER BY d.run_id
        ON CONFLICT (run_id, shard) DO UPDATE SET {added}
    """


def _function(name: str, tables: Sequence[str], body: str) -> str:
    """A trigger function running ``body`` when a row of ``tables`` has a run: a
    statement on transactional rows costs one cheap query, not the upsert's."""
    promotional = " UNION ALL ".join(
        f"SELECT FROM {table} WHERE promotion_run_id IS NOT NULL" for table in tables
    )
    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM FROM ({promotional}) AS t LIMIT 1;
        IF FOUND THEN
            {body};
        END IF;
        RETURN NULL;
    END
    $$
    """


def upgrade() -> None:
    op.create_table(
        "promotion_run_counts",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)
            for name in COUNTERS
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["promotion_runs.id"],
            name=op.f("fk_promotion_run_counts_run_id_promotion_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "shard", name=op.f("pk_promotion_run_counts")),
    )
    added, removed = (
        _COUNTS.format(sign="", rows="new_rows"),
        _COUNTS.format(sign="-", rows="old_rows"),
    )
    op.execute(
        _function("promotion_run_counts_on_update", ("new_rows", "old_rows"), _add(added, removed))
    )
    op.execute(_function("promotion_run_counts_on_delete", ("old_rows",), _add(removed)))
    op.execute(
        """
        CREATE TRIGGER promotion_run_counts_on_update AFTER UPDATE ON email_messages
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION promotion_run_counts_on_update()
        """
    )
    op.execute(
        """
        CREATE TRIGGER promotion_run_counts_on_delete AFTER DELETE ON email_messages
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION promotion_run_counts_on_delete()
        """
    )
    op.execute(
        f"INSERT INTO promotion_run_counts (run_id, shard, {NAMES})"
        f" SELECT run_id, 0, {NAMES} FROM ("
        + _COUNTS.format(sign="", rows="email_messages")
        + ") AS t"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS promotion_run_counts_on_delete ON email_messages")
    op.execute("DROP TRIGGER IF EXISTS promotion_run_counts_on_update ON email_messages")
    op.execute("DROP FUNCTION IF EXISTS promotion_run_counts_on_delete()")
    op.execute("DROP FUNCTION IF EXISTS promotion_run_counts_on_update()")
    op.drop_table("promotion_run_counts")
