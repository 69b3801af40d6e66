"""Retention: delete finished procrastinate jobs (their events go with them), and drop
old template contexts from the email ledger. The ledger rows themselves are kept:
they are the audit trail.

Work is done in bounded batches, one transaction each, so a first run over
millions of old jobs never holds locks for long. A job counts as finished at its
latest event; one that was re-queued recently is kept whatever its first outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.db.queue_sql import DELETE_FINISHED_JOBS
from jobs.mail.journal import prune_settled
from jobs.results.store import prune_results

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
_DROP_CONTEXTS = text("""
UPDATE email_messages SET context = NULL
 WHERE id IN (SELECT id FROM email_messages
               WHERE context IS NOT NULL AND created_at < :cutoff AND status <> 'pending'
               ORDER BY created_at
               LIMIT :batch_size
                 FOR UPDATE SKIP LOCKED)
""")


@dataclass(frozen=True)
class Cursor:
    """Where the walk over outcome events stopped."""

    at: datetime
    id: int


async def delete_finished_jobs_batch(
    session: AsyncSession, *, cutoff: datetime, after: Cursor | None, batch_size: int
) -> tuple[int, Cursor | None]:
    """One batch: (jobs deleted, cursor for the next batch or None when done). Never commits."""
    row = (
        await session.execute(
            DELETE_FINISHED_JOBS,
            {
                "cutoff": cutoff,
                "after_at": after.at if after else datetime.min.replace(tzinfo=cutoff.tzinfo),
                "after_id": after.id if after else 0,
                "batch_size": batch_size,
            },
        )
    ).one()
    cursor = None if row.last_at is None else Cursor(row.last_at, int(row.last_id))
    return int(row.deleted), cursor


async def drop_contexts_batch(session: AsyncSession, *, cutoff: datetime, batch_size: int) -> int:
    """Drop the template context of up to ``batch_size`` finished rows created before cutoff."""
    result = await session.execute(_DROP_CONTEXTS, {"cutoff": cutoff, "batch_size": batch_size})
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult


async def prune(
    sessions: async_sessionmaker[AsyncSession],
    *,
    jobs_before: datetime,
    contexts_before: datetime | None,
    batch_size: int = BATCH_SIZE,
) -> dict[str, int]:
    """Run every batch, each in its own transaction; returns what was pruned."""
    deleted = dropped = 0
    cursor: Cursor | None = None
    while True:
        async with sessions() as session, session.begin():
            n, cursor = await delete_finished_jobs_batch(
                session, cutoff=jobs_before, after=cursor, batch_size=batch_size
            )
        deleted += n
        if cursor is None:
            break
    async with sessions() as session, session.begin():  # results go with their jobs
        results = await prune_results(session, before=jobs_before)
        settled = await prune_settled(session)
    if settled:
        logger.info("retention: dropped %d settled journal entries", settled)
    while contexts_before is not None:
        async with sessions() as session, session.begin():
            n = await drop_contexts_batch(session, cutoff=contexts_before, batch_size=batch_size)
        dropped += n
        if n < batch_size:
            break
    if deleted or dropped or results:
        logger.info(
            "retention: deleted %d finished jobs and %d results, dropped %d email contexts",
            deleted,
            results,
            dropped,
        )
    return {"jobs_deleted": deleted, "results_deleted": results, "contexts_dropped": dropped}
