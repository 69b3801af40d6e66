"""The circuit breaker on promotion runs: pause a run whose recipients bounce or
complain too much, before it burns the sender's reputation.

A run's sample is its messages that reached a verdict (sent, or refused with a
5xx); its bounces are the 5xx refusals plus the hard bounces reported later; its
complaints, the complaints reported. Once the sample since the last resume
reaches ``min_sample``, a rate over its limit pauses the run: the fan-out queues
no more chunks and delivery sends none of its pending rows, until an operator
resumes (`resume_run`, the counts so far become the new baseline) or cancels
(`cancel_run`, its pending rows fail as cancelled).

PostgreSQL keeps the counts: triggers on ``email_messages`` add what each
UPDATE or DELETE changed to the run's rows in ``promotion_run_counts`` (one per
shard, at most 16; migration 0017), so whatever changes a row (delivery, the
journal, a re-queue, feedback, a cancel) keeps them right, and a check sums a
handful of rows, whatever the run's size. Every check is one query on the
caller's session; nothing here commits. Feedback checks the run of each report
at once; delivery checks a run on refusals and as its jobs end, at most once a
second per process (`RunChecks`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.errors import JobsError

logger = logging.getLogger(__name__)

CANCELLED = "cancelled: promotion run {run_id} was cancelled by an operator"
CHECK_INTERVAL = 1.0  # seconds between a delivery process's checks of one run


@dataclass(frozen=True)
class Thresholds:
    max_bounce_rate: float
    max_complaint_rate: float
    min_sample: int


@dataclass(frozen=True)
class Paused:
    run_id: int
    reason: str


# A run's counts are the sums of its counter rows (one per shard, at most 16), which
# triggers on email_messages keep (migration 0017): a check reads no ledger row.
_COUNTS = """
    SELECT r.id,
           CAST(coalesce(sum(c.sample), 0) AS bigint) AS sample,
           CAST(coalesce(sum(c.bounces), 0) AS bigint) AS bounces,
           CAST(coalesce(sum(c.complaints), 0) AS bigint) AS complaints,
           r.baseline_sample, r.baseline_bounces, r.baseline_complaints
      FROM promotion_runs AS r LEFT JOIN promotion_run_counts AS c ON c.run_id = r.id
"""
_RUNS_OF_MESSAGES = text(
    _COUNTS
    + """
     WHERE r.id IN (SELECT promotion_run_id FROM email_messages WHERE id = ANY(:ids))
       AND r.paused_at IS NULL AND r.cancelled_at IS NULL
     GROUP BY r.id
    """
)
_RUNS = text(
    _COUNTS
    + """
     WHERE r.id = ANY(CAST(:ids AS bigint[]))
       AND r.paused_at IS NULL AND r.cancelled_at IS NULL
     GROUP BY r.id
    """
)
_RUN = text(_COUNTS + " WHERE r.id = :run_id GROUP BY r.id")
_PAUSE = text(
    """
    UPDATE promotion_runs SET paused_at = now(), pause_reason = :reason
     WHERE id = :run_id AND paused_at IS NULL AND cancelled_at IS NULL
    RETURNING id
    """
)


def verdict(sample: int, bounces: int, complaints: int, thresholds: Thresholds) -> str | None:
    """Why a run with these counts (since its baseline) must pause, or None."""
    if sample < thresholds.min_sample or sample <= 0:
        return None
    bounce_rate, complaint_rate = bounces / sample, complaints / sample
    if bounce_rate > thresholds.max_bounce_rate:
        return (
            f"hard-bounce rate {bounce_rate:.1%} ({bounces}/{sample}) is over "
            f"PROMOTION_MAX_BOUNCE_RATE {thresholds.max_bounce_rate:.1%}"
        )
    if complaint_rate > thresholds.max_complaint_rate:
        return (
            f"complaint rate {complaint_rate:.2%} ({complaints}/{sample}) is over "
            f"PROMOTION_MAX_COMPLAINT_RATE {thresholds.max_complaint_rate:.2%}"
        )
    return None


class RunChecks:
    """When this process last checked each promotion run.

    Delivery checks a run at most once per ``interval`` seconds per process: often
    enough to pause within about a second, without one more query in every batch.
    """

    def __init__(self, interval: float = CHECK_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[int, float] = {}

    def due(self, run_ids: Iterable[int]) -> list[int]:
        """The runs among ``run_ids`` not checked within ``interval``; marked checked now."""
        now = time.monotonic()
        due = [r for r in set(run_ids) if now - self._last.get(r, -math.inf) >= self.interval]
        for run_id in due:
            self._last[run_id] = now
        return sorted(due)


async def check_runs(
    session: AsyncSession, run_ids: Sequence[int], thresholds: Thresholds
) -> list[Paused]:
    """Check the running promotion runs ``run_ids``; pause those over a limit."""
    return await _check(session, _RUNS, run_ids, thresholds)


async def check_messages(
    session: AsyncSession, ledger_ids: Sequence[int], thresholds: Thresholds
) -> list[Paused]:
    """Check the running promotion runs the ledger rows ``ledger_ids`` belong to;
    pause those over a limit. One query, plus one UPDATE per run it pauses."""
    return await _check(session, _RUNS_OF_MESSAGES, ledger_ids, thresholds)


async def _check(
    session: AsyncSession, counts: TextClause, ids: Sequence[int], thresholds: Thresholds
) -> list[Paused]:
    """Judge the runs ``counts`` (one of the queries above, on ``:ids``) returns."""
    if not ids:
        return []
    rows = (await session.execute(counts, {"ids": list(ids)})).all()
    paused: list[Paused] = []
    for run_id, sample, bounces, complaints, base_sample, base_bounces, base_complaints in rows:
        reason = verdict(
            sample - base_sample, bounces - base_bounces, complaints - base_complaints, thresholds
        )
        if reason is None:
            continue
        if (await session.execute(_PAUSE, {"run_id": run_id, "reason": reason})).first():
            logger.error("promotion run %s paused by the circuit breaker: %s", run_id, reason)
            paused.append(Paused(int(run_id), reason))
    return paused


async def resume_run(session: AsyncSession, run_id: int) -> list[int]:
    """Unpause ``run_id`` with the counts so far as the new baseline; returns the
    ids of its rows still pending (the caller queues delivery for them)."""
    run = (
        await session.execute(
            text("SELECT paused_at, cancelled_at FROM promotion_runs WHERE id = :id FOR UPDATE"),
            {"id": run_id},
        )
    ).first()
    if run is None:
        raise JobsError(f"no promotion run {run_id}")
    if run.cancelled_at is not None:
        raise JobsError(f"promotion run {run_id} was cancelled; it cannot be resumed")
    counts = (await session.execute(_RUN, {"run_id": run_id})).first()
    sample, bounces, complaints = (counts[1], counts[2], counts[3]) if counts else (0, 0, 0)
    await session.execute(
        text(
            """
            UPDATE promotion_runs SET paused_at = NULL, pause_reason = NULL,
                   baseline_sample = :sample, baseline_bounces = :bounces,
                   baseline_complaints = :complaints
             WHERE id = :id
            """
        ),
        {"id": run_id, "sample": sample, "bounces": bounces, "complaints": complaints},
    )
    pending = await session.execute(
        text(
            "SELECT id FROM email_messages WHERE promotion_run_id = :id AND status = 'pending' "
            "ORDER BY id"
        ),
        {"id": run_id},
    )
    logger.info("promotion run %s resumed", run_id)
    return [int(i) for (i,) in pending.all()]


async def cancel_run(session: AsyncSession, run_id: int) -> int:
    """End ``run_id`` for good: no more chunks; its pending rows fail as cancelled.
    Returns how many rows it failed."""
    updated = await session.execute(
        text(
            """
            UPDATE promotion_runs
               SET cancelled_at = now(), finished_at = coalesce(finished_at, now())
             WHERE id = :id AND cancelled_at IS NULL RETURNING id
            """
        ),
        {"id": run_id},
    )
    if updated.first() is None:
        exists = await session.scalar(
            text("SELECT count(*) FROM promotion_runs WHERE id = :id"), {"id": run_id}
        )
        raise JobsError(
            f"promotion run {run_id} was already cancelled"
            if exists
            else f"no promotion run {run_id}"
        )
    failed = await session.execute(
        text(
            """
            UPDATE email_messages SET status = 'failed', failure_kind = 'cancelled',
                   last_error = :reason
             WHERE id IN (SELECT id FROM email_messages
                           WHERE promotion_run_id = :id AND status = 'pending'
                           FOR UPDATE SKIP LOCKED)
            """
        ),
        {"id": run_id, "reason": CANCELLED.format(run_id=run_id)},
    )
    logger.info("promotion run %s cancelled", run_id)
    return int(failed.rowcount)  # type: ignore[attr-defined]  # a CursorResult
