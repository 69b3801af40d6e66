"""The email delivery task: one job carries 1..N ledger ids."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from procrastinate.job_context import AbortReason
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.app import app
from jobs.db import async_engine, database_url
from jobs.errors import describe
from jobs.mail import ledger
from jobs.mail.delivery import Report, deliver_batch
from jobs.mail.enqueue import defer_delivery_async
from jobs.mail.journal import get_journal
from jobs.models import FailureKind
from jobs.results.middleware import mark_stored
from jobs.results.store import store_result_async
from jobs.settings import Settings, get_settings
from jobs.tasks import BULK_PRIORITY, DELIVER_TASK, EMAIL_QUEUE
from jobs.worker.deliveries import batch_session, delivery_for
from jobs.worker.retry import Backoff, BackoffRetry
from jobs.worker.timeout import deadline_passed, timeout_for

logger = logging.getLogger(__name__)

RETRY_BASE_DELAY = 10.0  # seconds before the first retry; doubles each time


def backoff(settings: Settings) -> Backoff:
    return Backoff(
        max_attempts=settings.MAIL_MAX_ATTEMPTS,
        base_delay=RETRY_BASE_DELAY,
        max_delay=settings.MAIL_RETRY_MAX_DELAY,
    )


# Per-message failures never leave the task, so whatever does (SMTP 4xx, a lost
# connection, a timeout, a database error, a shutdown's cancellation) left rows
# pending: retry it. The final attempt marks those rows failed instead.
retry = BackoffRetry(lambda: backoff(get_settings()), (Exception, asyncio.CancelledError))


def _interrupted(context: JobContext, settings: Settings) -> str:
    if deadline_passed(context):
        limit = timeout_for(DELIVER_TASK, settings.JOB_TIMEOUT_SECONDS)
        return f"job timed out after {limit:g} s (JOB_TIMEOUT_SECONDS)"
    return "delivery interrupted (worker stopped or job aborted)"


JOURNAL_WAIT = 5.0  # seconds a job that ends for good waits for its acceptances to be written


async def _give_up(url: str, message_ids: list[int], kind: FailureKind, reason: str) -> None:
    """Fail the still-pending rows of a job that ends now, in their own transaction,
    so that no row stays pending with no job left to send it (accepted ones: sent)."""
    await get_journal(url).flush(JOURNAL_WAIT)
    async with AsyncSession(async_engine(url)) as session, session.begin():
        await ledger.fail_pending(session, message_ids, kind, reason)


async def _defer_not_yet_due(session: AsyncSession, message_ids: list[int], priority: int) -> None:
    """Rows this job may not send yet (``send_at``) get a job of their own at that time,
    so that a job that ran early never leaves them pending with nothing to send them."""
    ids, due = await ledger.not_yet_due(session, message_ids)
    if ids:
        await defer_delivery_async(session, ids, priority=priority, scheduled_at=due)
        logger.info("%d email(s) not due yet: deferred to %s", len(ids), due.isoformat())


async def _throttled(
    session: AsyncSession,
    report: Report,
    priority: int,
    settings: Settings,
    since: datetime | None,
) -> int:
    """Rows a receiver's "slow down" left pending get a job of their own a few seconds
    later, instead of a retry that would cost this job an attempt; their domain's
    lowered budget paces them then (`jobs.mail.ratelimit.DomainLimits`). Once the
    receiver has asked for longer than this job's retries could last
    (`Backoff.window`), they fail instead; how many failed."""
    now = datetime.now(UTC)
    policy = backoff(settings)
    if since is not None and (now - since).total_seconds() > policy.window():
        reason = (
            f"{ledger.TRANSIENT_EXHAUSTED}the receiver has asked to slow down since "
            f"{since.isoformat(timespec='seconds')}"
        )
        failed = await ledger.fail_pending(
            session, report.throttled, FailureKind.TRANSIENT_EXHAUSTED, reason
        )
        logger.warning("%d throttled email(s) failed: %s", failed, reason)
        return failed
    at = now + timedelta(seconds=policy.delay(0))
    await defer_delivery_async(
        session, report.throttled, priority=priority, scheduled_at=at, throttled_since=since or now
    )
    logger.info(
        "%d email(s) throttled by their receiver: deferred to %s",
        len(report.throttled),
        at.isoformat(),
    )
    return 0


def _since(value: str | None) -> datetime | None:
    """The ``throttled_since`` argument; a value that is not an aware time counts as unset."""
    if value is None:
        return None
    try:
        since = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return since if since.tzinfo is not None else None


@app.task(name=DELIVER_TASK, queue=EMAIL_QUEUE, retry=retry, pass_context=True)
async def deliver(
    context: JobContext, message_ids: list[int], throttled_since: str | None = None
) -> dict[str, int]:
    """Send the pending messages among ``message_ids``, one committed batch at a time.

    Server trouble is raised after the batch that met it is committed, and a
    deferred message (4xx for it) once every batch is, so procrastinate retries
    the job for the rows still pending. Rows throttled by their receiver ("slow
    down") are no reason to retry: unless the job is retried anyway, they get a
    job of their own, deferred with the last batch, which carries ``throttled_since``
    (ISO 8601: when their receiver first asked). When the job ends for good —
    its final attempt, or an operator's `jobs cancel` — no row is left pending
    without a job.
    """
    settings = get_settings()
    url = database_url(settings)
    final = backoff(settings).is_final(context.job.attempts)
    report = Report()
    rescheduled: set[int] = set()  # throttled rows given a job of their own, committed
    try:
        run = await delivery_for(
            settings,
            url,
            bulk=context.job.priority == BULK_PRIORITY,  # promotion chunks
            final_attempt=final,
            interrupted=lambda: _interrupted(context, settings),
        )
        async with batch_session(url) as session:  # one connection, a transaction per batch
            while not report.done:
                async with session.begin():
                    tally = await deliver_batch(session, message_ids, report, run)
                    again = report.done and (final or report.finish() is None)  # no retry
                    if again and report.throttled:
                        failed = await _throttled(
                            session,
                            report,
                            context.job.priority,
                            settings,
                            _since(throttled_since),
                        )
                        report.failed += failed
                        tally.emails["failed"] += failed
                    if report.done and report.finish() is None:
                        if report.own_locked < len(set(message_ids)):  # some were not due?
                            await _defer_not_yet_due(session, message_ids, context.job.priority)
                        # The summary commits with the last batch's ledger updates.
                        await store_result_async(
                            session,
                            job_id=context.job.id,
                            task_name=DELIVER_TASK,
                            result=report.summary(),
                        )
                tally.publish()  # committed
                if again:
                    rescheduled.update(report.throttled)
        logger.info("email.deliver job %s: %s", context.job.id, report.summary())
        trouble = report.finish()  # raised once every batch is committed
        if trouble is not None:
            raise trouble
        mark_stored(context)
    except asyncio.CancelledError:
        if context.abort_reason() == AbortReason.USER_REQUEST:
            reason = ledger.CANCELLED.format(job_id=context.job.id)
            await _give_up(url, message_ids, FailureKind.CANCELLED, reason)
            raise JobAborted(f"job {context.job.id} was cancelled by an operator") from None
        if final:
            reason = ledger.TRANSIENT_EXHAUSTED + _interrupted(context, settings)
            left = [i for i in message_ids if i not in rescheduled]
            await _give_up(url, left, FailureKind.TRANSIENT_EXHAUSTED, reason)
        raise
    except Exception as exc:
        if final:
            reason = ledger.TRANSIENT_EXHAUSTED + describe(exc)
            left = [i for i in message_ids if i not in rescheduled]
            await _give_up(url, left, FailureKind.TRANSIENT_EXHAUSTED, reason)
        raise
    return report.summary()
