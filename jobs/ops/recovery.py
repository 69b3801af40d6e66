"""Stalled jobs: jobs left `doing` by a worker that stopped heart-beating (killed, crashed,
machine gone). procrastinate never retries them by itself.

Each is re-queued at once, at most ``max_recoveries`` times per job (counted in
`job_recoveries`); the next time its worker dies, the job is marked failed
("worker died N times") with its pending emails, so a job that kills its worker
cannot loop forever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.db.queue_sql import FAIL_JOB, RETRY_JOB_NOW, STALLED_JOBS
from jobs.mail import ledger
from jobs.models import FailureKind
from jobs.ops import metrics

logger = logging.getLogger(__name__)

_COUNT = text("""
INSERT INTO job_recoveries AS r (job_id, recoveries) VALUES (:job_id, 1)
ON CONFLICT (job_id) DO UPDATE
   SET recoveries = r.recoveries + 1, last_recovered_at = now()
RETURNING r.recoveries
""")


@dataclass
class Recovered:
    retried: int = 0
    failed: int = 0

    def summary(self) -> dict[str, int]:
        return {"retried": self.retried, "failed": self.failed}


async def _give_up(
    session: AsyncSession, job_id: int, task: str, args: dict[str, Any], deaths: int
) -> None:
    reason = ledger.WORKER_DIED.format(n=deaths)
    await session.execute(FAIL_JOB, {"job_id": job_id})
    ids = ledger.message_ids(task, args)
    if ids:
        await session.execute(ledger.SETTLE_ACCEPTED, {"ids": ids})
        await session.execute(ledger.fail_pending_statement(ids, FailureKind.WORKER_DIED, reason))
    metrics.STALLED_JOBS.labels("failed").inc()
    logger.error("job %s (%s) failed: %s", job_id, task, reason)


async def recover_stalled_jobs(
    session: AsyncSession, *, stalled_after: float, max_recoveries: int
) -> Recovered:
    """Re-queue (or give up on) every stalled job; never commits."""
    result = Recovered()
    stalled = (await session.execute(STALLED_JOBS, {"stalled_after": stalled_after})).all()
    for job_id, task, args in stalled:
        recoveries = int((await session.execute(_COUNT, {"job_id": job_id})).scalar_one())
        if recoveries > max_recoveries:
            await _give_up(session, job_id, task, args, deaths=recoveries)
            result.failed += 1
            continue
        await session.execute(RETRY_JOB_NOW, {"job_id": job_id})
        metrics.STALLED_JOBS.labels("retried").inc()
        logger.warning(
            "job %s (%s) was running on a worker that stopped heart-beating: "
            "re-queued (recovery %d of %d)",
            job_id,
            task,
            recoveries,
            max_recoveries,
        )
        result.retried += 1
    return result
