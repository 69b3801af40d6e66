"""Delivering ledger rows, one small batch per transaction.

A batch is: lock the next pending rows (`jobs.mail.ledger.lock_batch`), send them
concurrently over the worker's SMTP pool within the global rate limit, record
every outcome in one UPDATE. The caller commits after each batch. Every
acceptance also goes at once to the process's journal (`jobs.mail.journal`),
outside that transaction: a row the server accepted before is recorded
``sent`` when a batch locks it again (after a crash or a lost connection),
never sent twice.

Every batch first takes waiting one-email transactional jobs, in the statement
that locks the batch (`jobs.mail.ledger.lock_batch`): half a batch while the job
has rows of its own left, a whole one after. So a welcome email waits for at most
one batch of any running delivery, and a burst of one-email jobs is sent in
batches by the jobs that run and by each worker's sweeper (`jobs.worker.sweeper`,
batches with no rows of their own), whose transaction also finishes the jobs
taken; workers never fetch those. A job goes on taking full batches (up to
`SWEEP_BATCHES`) once its own rows are done.

- accepted → ``sent``; a 5xx, a bad address or a template error → ``failed``
  with the reason, and the batch goes on; a user deactivated since → ``suppressed``;
- transient trouble (4xx, timeout, lost connection) stops the job: what was
  sent is recorded, the rest stays ``pending`` for procrastinate's retry (or,
  on the final attempt, becomes ``failed`` with the last reason);
- a "slow down" reply from a domain with a budget (`MAIL_DOMAIN_RATE_LIMITS`)
  lowers that budget and leaves the row ``pending``, not tried: unless the job
  is retried anyway, the task gives it a job of its own a few seconds later
  (`Report.throttled`), so a throttling receiver costs no attempt.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from jobs.errors import JobsError, describe
from jobs.feedback.breaker import RunChecks, Thresholds, check_runs
from jobs.feedback.suppressions import suppress_refused
from jobs.feedback.verp import return_path
from jobs.mail import ledger, smtp
from jobs.mail.config import MailConfig
from jobs.mail.journal import Accepted, Journal
from jobs.mail.ledger import Outcome, Pending
from jobs.mail.message import Outgoing, build_wire, message_id_for
from jobs.mail.pool import SmtpPool
from jobs.mail.ratelimit import DomainLimits, RateLimiter
from jobs.mail.templates import render
from jobs.models import EmailStatus, FailureKind
from jobs.ops import metrics
from jobs.tasks import DELIVER_TASK

logger = logging.getLogger(__name__)

BATCH_SIZE = 50  # rows per transaction (acceptances are journaled at once, see above)
JOURNAL_PATIENCE = 2.0  # seconds a batch waits for its acceptances to be journaled
SWEEP_BATCHES = 20  # full batches of taken messages a job sends after its own


def batch_size(rate: float | None) -> int:
    """`BATCH_SIZE`, or about one second of budget under a rate limit."""
    return BATCH_SIZE if rate is None else max(1, min(BATCH_SIZE, math.ceil(rate)))


@dataclass(frozen=True)
class Delivery:
    """What one delivery job works with; built once, at the task's edge."""

    mail: MailConfig
    pool: SmtpPool
    limiter: RateLimiter
    final_attempt: bool
    installation: str  # mixed into every Message-ID (jobs.db.installation)
    interrupted: Callable[[], str] = lambda: "delivery interrupted"
    batch_size: int = BATCH_SIZE
    breaker: Thresholds | None = None  # promotion chunks: the circuit breaker
    breaker_checks: RunChecks = field(default_factory=RunChecks)  # one per process
    domains: DomainLimits | None = None  # MAIL_DOMAIN_RATE_LIMITS
    journal: Journal | None = None  # None: acceptances are only recorded with the batch


@dataclass
class Report:
    """Progress of one job over its batches; ``error`` is re-raised after the commit."""

    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    todo: list[int] | None = None  # the job's own ids, sorted (set by the first batch)
    next: int = 0  # the index in ``todo`` where the next batch starts
    own_locked: int = 0  # rows of its own this job locked (each was due)
    sweeps: int = 0  # batches of taken messages only
    done: bool = False
    runs: set[int] = field(default_factory=set)  # the promotion runs of the rows seen
    error: BaseException | None = field(default=None, repr=False)
    deferred: BaseException | None = field(default=None, repr=False)
    throttled: list[int] = field(default_factory=list)  # own rows a "slow down" left pending

    @property
    def own_done(self) -> bool:
        """No row of the job's own is left to lock."""
        return self.todo is not None and self.next >= len(self.todo)

    def finish(self) -> BaseException | None:
        """What the task raises once every batch is committed: the trouble that
        stopped it, else a deferral (so that a retry sends the deferred rows).
        Throttled rows are no reason to raise: a retry would cost the job an attempt."""
        return self.error or self.deferred

    def summary(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "suppressed": self.suppressed}


@dataclass
class Tally:
    """One batch's counts for /metrics, published once its transaction has committed:
    what a failed commit leaves pending is recorded by a retry (from the journal, if the
    server accepted it), and counted then."""

    emails: Counter[str] = field(default_factory=Counter)  # by outcome
    finished_jobs: int = 0  # taken jobs this batch finished

    def publish(self) -> None:
        for outcome, n in self.emails.items():
            metrics.EMAILS.labels(outcome).inc(n)
        metrics.JOBS_FINISHED.labels(DELIVER_TASK, "succeeded").inc(self.finished_jobs)


def compose(row: Pending, mail: MailConfig, installation: str) -> tuple[Outgoing, str]:
    """Render and build the MIME message for one row; returns it and its subject."""
    context = {**mail.template_globals, **(row.context or {})}
    rendered = render(row.template, context, mail.template_dirs)
    subject = row.subject or rendered.subject
    if not subject:
        raise JobsError(f"template {row.template!r} sets no subject and none was given")
    message = build_wire(
        sender=mail.sender,
        sender_name=mail.sender_name,
        to=row.to_address,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(row.idempotency_key, mail.sender, installation),
        headers=row.headers,
        reply_to=mail.reply_to,
    )
    if mail.verp is not None:  # bounces come back naming this row
        message = replace(message, sender=return_path(mail.verp.key, row.id, mail.verp.domain))
    return message, subject


def _fail(outcome: Outcome, kind: FailureKind, reason: str) -> None:
    outcome.fail(kind, reason)
    logger.warning("email %s failed: %s", outcome.id, reason)


async def send_all(
    rows: Sequence[Pending],
    outcomes: dict[int, Outcome],
    run: Delivery,
    taken: Collection[int] = (),
) -> tuple[BaseException | None, smtp.Deferred | None, list[int]]:
    """Send ``rows`` over up to ``pool.max_size`` connections at once.

    Fills ``outcomes`` as messages complete (so a cancelled caller still knows
    what was sent). Returns the server trouble that stopped it, if any, a
    deferral (a 4xx for one message, which stays pending while the rest go on),
    and the ids of the rows throttled (a "slow down" from a domain with a
    budget: not tried, pending, never failed here, and no deferral).
    A deferred or throttled row in ``taken`` is left to its own job: it stays
    pending, and is neither failed on this job's final attempt nor a reason to
    retry this job.
    """
    slots = await run.limiter.reserve(len(rows))
    by_domain = await run.domains.reserve(r.to_address for r in rows) if run.domains else []
    queue = iter(enumerate(rows))
    stop: list[BaseException] = []
    deferred: list[smtp.Deferred] = []
    throttled: list[int] = []

    async def sender() -> None:
        for index, row in queue:  # one shared iterator: each row goes to one sender
            if stop:
                return
            outcome = outcomes[row.id] = Outcome(row.id)
            try:
                message, outcome.subject = compose(row, run.mail, run.installation)
            except Exception as exc:  # a bad template or address fails this message only
                reason = str(exc) if isinstance(exc, JobsError) else describe(exc)
                _fail(outcome, FailureKind.INVALID, reason)
                continue
            await slots.wait(index)
            if by_domain and (domain_slot := by_domain[index]) is not None:
                await domain_slot.wait(0)
            outcome.attempted = True  # a failed connect is a failed attempt too
            try:
                async with run.pool.connection() as client:
                    if stop:  # another sender met trouble while this one waited
                        outcome.attempted = False
                        return
                    with metrics.DELIVERY_DURATION.time():
                        await smtp.send(client, message)
            except smtp.Rejected as exc:
                _fail(outcome, FailureKind.REJECTED, str(exc))
                continue
            except smtp.Deferred as exc:
                if (
                    isinstance(exc, smtp.SlowDown)
                    and run.domains is not None
                    and await run.domains.slow_down(row.to_address)  # its domain has a budget
                ):
                    outcome.attempted = False  # throttled, not tried
                    outcome.error = f"{exc} (the receiver asked to slow down; budget lowered)"
                    throttled.append(row.id)
                    continue
                outcome.error = f"{exc} (server {run.mail.smtp.address})"
                if row.id in taken:  # its own job, still waiting, retries it
                    continue
                if run.final_attempt:
                    reason = ledger.TRANSIENT_EXHAUSTED + outcome.error
                    _fail(outcome, FailureKind.TRANSIENT_EXHAUSTED, reason)
                deferred.append(exc)
                continue
            except Exception as exc:
                outcome.error = f"{describe(exc)} (server {run.mail.smtp.address})"
                stop.append(exc)
                return
            outcome.status = EmailStatus.SENT
            outcome.message_id = message.message_id
            outcome.sent_at = datetime.now(UTC)
            if run.journal is not None:
                run.journal.add(
                    Accepted(row.id, message.message_id, outcome.subject, outcome.sent_at)
                )

    async with asyncio.TaskGroup() as group:
        for _ in range(min(run.pool.max_size, len(rows))):
            group.create_task(sender())
    return (stop[0] if stop else None), (deferred[0] if deferred else None), throttled


async def deliver_batch(
    session: AsyncSession, ids: Sequence[int], report: Report, run: Delivery
) -> Tally:
    """Lock, send and record the next batch of ``ids``; never commits. The caller
    publishes the returned counts once it has committed.

    Server trouble or a cancellation (job timeout) ends the job: it is put in
    ``report.error`` for the caller to raise once this batch is committed. A
    deferred message does not: the job goes on, and raises at its end so that
    a retry takes the deferred messages (see `Report.finish`). A throttled row of
    the job's own goes to ``report.throttled``, for the caller to give a job of
    its own; the final attempt does not fail it.
    """
    greedy = run.batch_size if report.own_done else run.batch_size // 2
    if report.todo is None:
        report.todo = sorted(set(ids))
    window = [] if report.own_done else report.todo[report.next : report.next + run.batch_size]
    rows = await ledger.lock_batch(session, window, take=greedy)
    taken = {row.id: row.taken_job for row in rows if row.taken_job is not None}
    if report.own_done:
        report.sweeps += 1
    else:
        report.next += len(window)
        report.own_locked += sum(row.taken_job is None for row in rows)
    report.done = report.own_done and (len(taken) < greedy or report.sweeps >= SWEEP_BATCHES)
    before = {row.id: row.accepted for row in rows if row.accepted is not None}
    if run.journal is not None:  # acceptances this process has not written yet
        before.update(run.journal.remembered(row.id for row in rows))
    outcomes = {
        row.id: Outcome(row.id, EmailStatus.SUPPRESSED, error=row.suppress)
        for row in rows
        if row.suppress and row.id not in before
    }
    for accepted in before.values():  # accepted by the server before: record, never resend
        outcomes[accepted.id] = Outcome(
            accepted.id,
            EmailStatus.SENT,
            message_id=accepted.message_id,
            subject=accepted.subject,
            sent_at=accepted.sent_at,
        )
        logger.info(
            "email %s was accepted before (%s): recorded as sent, not sent again",
            accepted.id,
            accepted.message_id,
        )
    reason: str | None = None
    throttled: list[int] = []
    try:
        sendable = [row for row in rows if row.id not in outcomes]
        error, deferred, throttled = await send_all(sendable, outcomes, run, taken)
        report.deferred = report.deferred or deferred
        report.throttled += [i for i in throttled if i not in taken]
    except asyncio.CancelledError as exc:  # recorded below, then re-raised by the caller
        error, reason = exc, run.interrupted()
        for outcome in outcomes.values():
            if outcome.attempted and outcome.status == EmailStatus.PENDING:
                outcome.error = reason
    if error is not None:
        report.error, report.done = error, True
        reason = reason or next(
            (o.error for o in outcomes.values() if o.error and o.status == EmailStatus.PENDING),
            describe(error),
        )
        logger.info(
            "delivery stopped, %s: %s", "giving up" if run.final_attempt else "will retry", reason
        )
    sent = [o.id for o in outcomes.values() if o.status == EmailStatus.SENT]
    if run.journal is not None and sent:
        # Written before this transaction deletes them (`ledger.record`): none is left behind.
        await run.journal.written(sent, JOURNAL_PATIENCE)
    await ledger.record(session, outcomes.values())
    handled = [outcome.id for outcome in outcomes.values() if outcome.status != EmailStatus.PENDING]
    finished = [taken[i] for i in handled if i in taken]
    await ledger.finish_taken(session, finished)
    tally = Tally(finished_jobs=len(finished))  # they ran here
    rejected = [o for o in outcomes.values() if o.failure == FailureKind.REJECTED]
    if rejected:  # "no such mailbox" is a hard bounce, whoever says it
        addresses = {row.id: row.to_address for row in rows}
        await suppress_refused(session, [(addresses[o.id], o.error or "") for o in rejected])
    if run.breaker is not None:  # on a refusal, and as the job ends: refusals count as bounces
        report.runs.update(row.promotion_run_id for row in rows if row.promotion_run_id)
        runs_of = {row.id: row.promotion_run_id for row in rows}
        refused = {r for o in rejected if (r := runs_of[o.id]) is not None}
        checked = run.breaker_checks.due(refused | report.runs if report.done else refused)
        await check_runs(session, checked, run.breaker)
    counts = Counter(outcome.status for outcome in outcomes.values())
    report.sent += counts[EmailStatus.SENT]
    report.failed += counts[EmailStatus.FAILED]
    report.suppressed += counts[EmailStatus.SUPPRESSED]
    for status in (EmailStatus.SENT, EmailStatus.FAILED, EmailStatus.SUPPRESSED):
        tally.emails[status.value] += counts[status]
    if not run.final_attempt:  # attempted, still pending: a retry will take them
        tally.emails["deferred"] += sum(
            o.attempted for o in outcomes.values() if o.status == EmailStatus.PENDING
        )
    tally.emails["deferred"] += len(throttled)  # not tried, never failed: sent later
    if reason is not None and run.final_attempt:  # throttled rows get a job of their own
        again = set(report.throttled)
        left = [i for i in ids if i not in again]
        failed = await ledger.fail_pending(
            session, left, FailureKind.TRANSIENT_EXHAUSTED, ledger.TRANSIENT_EXHAUSTED + reason
        )
        report.failed += failed
        tally.emails["failed"] += failed
    return tally
