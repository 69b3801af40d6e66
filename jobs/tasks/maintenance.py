"""Periodic maintenance, run by the workers themselves (queue `default`):

- every minute, re-queue the jobs of dead workers (`jobs.ops.recovery`);
- every hour, prune finished jobs and old email contexts (`jobs.ops.retention`).

procrastinate defers each period once however many workers run; the queueing
lock keeps at most one of each waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobs.app import app
from jobs.db import async_session_factory, database_url
from jobs.ops.recovery import recover_stalled_jobs
from jobs.ops.retention import prune
from jobs.settings import get_settings
from jobs.tasks import DEFAULT_QUEUE, PRUNE_TASK, RECOVER_TASK


@app.periodic(cron="* * * * *", periodic_id="every-minute")
@app.task(name=RECOVER_TASK, queue=DEFAULT_QUEUE, queueing_lock=RECOVER_TASK)
async def recover_stalled(timestamp: int) -> dict[str, int]:
    """Re-queue jobs whose worker stopped heart-beating; fail them past JOB_MAX_RECOVERIES."""
    settings = get_settings()
    sessions = async_session_factory(database_url(settings))
    async with sessions() as session, session.begin():
        recovered = await recover_stalled_jobs(
            session,
            stalled_after=settings.WORKER_STALLED_AFTER,
            max_recoveries=settings.JOB_MAX_RECOVERIES,
        )
    return recovered.summary()


@app.periodic(cron="17 * * * *", periodic_id="hourly")
@app.task(name=PRUNE_TASK, queue=DEFAULT_QUEUE, queueing_lock=PRUNE_TASK)
async def prune_old(timestamp: int) -> dict[str, int]:
    """Delete jobs finished JOB_RETENTION_DAYS ago; drop contexts after LEDGER_CONTEXT_DAYS.

    Unlike other task bodies this commits once per batch (bounded transactions).
    """
    settings = get_settings()
    now = datetime.now(UTC)
    days = settings.LEDGER_CONTEXT_DAYS
    return await prune(
        async_session_factory(database_url(settings)),
        jobs_before=now - timedelta(days=settings.JOB_RETENTION_DAYS),
        contexts_before=now - timedelta(days=days) if days else None,
    )
