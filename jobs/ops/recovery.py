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

from jobs.mail import ledger, salvage
from jobs.ops import metrics

logger = logging.getLogger(__name__)

# The same rule as procrastinate's get_stalled_jobs (a `doing` job whose worker is gone
# or silent), locked so that two maintenance runs never handle one job twice.
_STALLED = text("""
SELECT j.id, j.task_name, j.args
  FROM procrastinate_jobs j
  LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE j.status = 'doing'
   AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => :stalled_after))
 ORDER BY j.id
   FOR UPDATE OF j SKIP LOCKED
""")

_COUNT = text("""
INSERT INTO job_recoveries AS r (job_id, recoveries) VALUES (:job_id, 1)
ON CONFLICT (job_id) DO UPDATE
   SET recoveries = r.recoveries + 1, last_recovered_at = now()
RETURNING r.recoveries
""")

_RETRY = text("SELECT procrastinate_retry_job_v2(:job_id, now(), NULL, NULL, NULL)")
_FAIL = text("SELECT procrastinate_finish_job_v1(:job_id, 'failed', false)")


@dataclass
class Recovered:
    retried: int = 0
    failed: int = 0

    def summary(self) -> dict[str, int]:
        return {"retried": self.retried, "failed": self.failed}


async def _give_up(
    session: AsyncSession, job_id: int, task: str, args: dict[str, Any], deaths: int
) -> None:
    reason = salvage.WORKER_DIED.format(n=deaths)
    await session.execute(_FAIL, {"job_id": job_id})
    ids = salvage.message_ids(task, args)
    if ids:
        await session.execute(ledger.fail_pending_statement(ids, reason))
    metrics.STALLED_JOBS.labels("failed").inc()
    logger.error("job %s (%s) failed: %s", job_id, task, reason)


async def recover_stalled_jobs(
    session: AsyncSession, *, stalled_after: float, max_recoveries: int
) -> Recovered:
    """Re-queue (or give up on) every stalled job; never commits."""
    result = Recovered()
    stalled = (await session.execute(_STALLED, {"stalled_after": stalled_after})).all()
    for job_id, task, args in stalled:
        recoveries = int((await session.execute(_COUNT, {"job_id": job_id})).scalar_one())
        if recoveries > max_recoveries:
            await _give_up(session, job_id, task, args, deaths=recoveries)
            result.failed += 1
            continue
        await session.execute(_RETRY, {"job_id": job_id})
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
