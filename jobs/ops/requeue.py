"""Failed work, by hand: `jobs retry-failed`, `jobs cancel` and the dashboard's buttons.

Re-queueing a failed job gives it a fresh start: status todo, due now, attempt
count and recovery count reset, so it gets its whole retry schedule again. For
an `email.deliver` job, its retryable failed ledger rows go back to pending
(the rule is in `jobs.mail.ledger`); permanent failures stay failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from jobs.db.queue_sql import CANCEL_JOB, FAILED_JOBS, LOCK_JOB, REQUEUE_FAILED_JOB
from jobs.errors import JobStateError
from jobs.mail import ledger
from jobs.models import FailureKind

_FORGET_RECOVERIES = text("DELETE FROM job_recoveries WHERE job_id = :job_id")

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d``, ``1w`` or a sum like ``1h30m``."""
    text_ = value.strip().lower()
    parts = _DURATION.findall(text_)
    if not parts or "".join(n + u for n, u in parts) != text_:
        raise ValueError(
            f"invalid duration {value!r}: use a number and a unit (s, m, h, d, w), e.g. 2h or 1h30m"
        )
    return sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta())


@dataclass
class RequeuedJob:
    id: int
    queue: str
    task: str
    failed_at: datetime | None
    emails_reset: int = 0


@dataclass
class Requeued:
    jobs: list[RequeuedJob] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # queueing lock taken by a waiting job

    @property
    def emails_reset(self) -> int:
        return sum(job.emails_reset for job in self.jobs)


def retry_failed(
    session: Session,
    *,
    queue: str | None = None,
    task: str | None = None,
    since: timedelta | None = None,
) -> Requeued:
    """Re-queue the failed jobs matching the filters; never commits (roll back: dry run)."""
    result = Requeued()
    params = {"queue": queue, "task": task, "since": since}
    failed = session.execute(FAILED_JOBS, params).all()
    for job_id, queue_name, task_name, args, failed_at in failed:
        if session.execute(REQUEUE_FAILED_JOB, {"job_id": job_id}).first() is None:
            result.skipped.append(job_id)
            continue
        session.execute(_FORGET_RECOVERIES, {"job_id": job_id})
        job = RequeuedJob(job_id, queue_name, task_name, failed_at)
        ids = ledger.message_ids(task_name, args)
        if ids:
            job.emails_reset = session.execute(ledger.reset_retryable(ids)).rowcount  # type: ignore[attr-defined]  # a CursorResult
        result.jobs.append(job)
    return result


def retry_job(session: Session, job_id: int) -> RequeuedJob:
    """Re-queue one failed job, as `retry_failed` does; never commits.

    `JobStateError` if there is no such job, it is not failed, or an identical job
    (same queueing lock) is already waiting.
    """
    row = session.execute(LOCK_JOB, {"job_id": job_id}).first()
    if row is None:
        raise JobStateError(f"there is no job {job_id}")
    status, task_name, args = row
    if status != "failed":
        raise JobStateError(f"job {job_id} is {status}: only a failed job can be retried")
    if session.execute(REQUEUE_FAILED_JOB, {"job_id": job_id}).first() is None:
        raise JobStateError(f"job {job_id} stays failed: an identical job is already waiting")
    session.execute(_FORGET_RECOVERIES, {"job_id": job_id})
    job = RequeuedJob(job_id, "", task_name, None)
    ids = ledger.message_ids(task_name, args)
    if ids:
        job.emails_reset = session.execute(ledger.reset_retryable(ids)).rowcount  # type: ignore[attr-defined]  # a CursorResult
    return job


def cancel(session: Session, job_id: int) -> str:
    """Cancel a waiting job, or ask a running one to abort; never commits.

    Returns what happened: ``"cancelled"`` or ``"abort requested"``.
    """
    row = session.execute(LOCK_JOB, {"job_id": job_id}).first()
    if row is None:
        raise JobStateError(f"there is no job {job_id}")
    status, task_name, args = row
    if status == "todo":
        session.execute(CANCEL_JOB, {"job_id": job_id, "abort": False})
        ids = ledger.message_ids(task_name, args)
        if ids:
            session.execute(
                ledger.fail_pending_statement(
                    ids, FailureKind.CANCELLED, ledger.CANCELLED.format(job_id=job_id)
                )
            )
        return "cancelled"
    if status == "doing":
        session.execute(CANCEL_JOB, {"job_id": job_id, "abort": True})
        return "abort requested"
    raise JobStateError(
        f"job {job_id} is {status}: only a waiting (todo) or running (doing) job can be cancelled"
    )
