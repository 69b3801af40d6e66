"""The ``email_messages`` ledger: every rule about a row's status and failure.

A delivery job locks a batch of ``pending`` rows (`lock_batch`) and records
their outcomes (`record`): ``sent``, ``suppressed``, or ``failed`` with a
`FailureKind` and a reason for humans. When a job ends with rows still pending
(given up, cancelled, its worker kept dying) `fail_pending_statement` fails
them, so none stays pending with no job left to send it.

When an operator re-queues a failed job (`jobs retry-failed`), only its
*retryable* failed rows go back to pending (`reset_retryable`): those whose
transient trouble outlasted every retry and those whose worker kept dying, if
the row still has its template context (retention may have dropped it). Never
reset: permanent refusals, template or address errors, and cancelled rows —
sending those again would fail the same way, or send what someone decided not
to send.

Each function is one round trip on the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Integer,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.db import driver, queue_sql
from jobs.db.begin import execute_first
from jobs.mail.journal import Accepted
from jobs.models import (
    AcceptedEmail,
    EmailMessage,
    EmailStatus,
    FailureKind,
    PromotionRun,
    Suppression,
    SuppressionReason,
    User,
)
from jobs.tasks import DELIVER_TASK

# Reasons written to ``last_error`` (for humans; `FailureKind` is what code reads).
CANCELLED = "cancelled: job {job_id} was cancelled by an operator"
TRANSIENT_EXHAUSTED = "transient, retries exhausted: "
WORKER_DIED = "worker died {n} times"

RETRYABLE = (FailureKind.TRANSIENT_EXHAUSTED, FailureKind.WORKER_DIED)
# Suppression reasons that stop transactional mail too (the others: promotions only).
SUPPRESSES_TRANSACTIONAL = (SuppressionReason.HARD_BOUNCE.value, SuppressionReason.MANUAL.value)


def message_ids(task_name: str, args: Mapping[str, Any]) -> list[int]:
    """The ledger ids a job carries (none unless it is an `email.deliver` job)."""
    if task_name != DELIVER_TASK:
        return []
    return [int(i) for i in args.get("message_ids") or ()]


@dataclass(frozen=True)
class Pending:
    """A locked ``pending`` row, with what sending it needs."""

    id: int
    idempotency_key: str
    to_address: str
    template: str
    context: dict[str, Any] | None
    subject: str | None
    headers: dict[str, str] | None  # extra headers (List-Unsubscribe for promotions)
    suppress: str | None  # why not to send it (user inactive, unsubscribed, suppressed address)
    promotion_run_id: int | None = None
    _: KW_ONLY
    taken_job: int | None = None  # the waiting job it was taken from, if any
    accepted: Accepted | None = None  # the server took it before: record it, never resend


@dataclass
class Outcome:
    """What happened to one row in this run; `record` writes it."""

    id: int
    status: EmailStatus = EmailStatus.PENDING
    attempted: bool = False  # counts as a delivery attempt
    error: str | None = None
    failure: FailureKind | None = None  # set with status FAILED
    message_id: str | None = None
    subject: str | None = None
    sent_at: datetime | None = None

    @property
    def changed(self) -> bool:
        return self.status != EmailStatus.PENDING or self.attempted

    def fail(self, kind: FailureKind, reason: str) -> None:
        self.status, self.failure, self.error = EmailStatus.FAILED, kind, reason


def _ids(name: str = "ids") -> Any:
    return any_(bindparam(name, type_=ARRAY(BigInteger)))


# Waiting one-email transactional jobs, locked (`queue_sql.TAKE_TRANSACTIONAL_JOBS`);
# a job carrying several messages stays locked, untouched, until the commit.
_TAKEN = queue_sql.TAKE_TRANSACTIONAL_JOBS.columns(
    column("message_id", BigInteger), column("job_id", BigInteger), column("n", Integer)
).cte("taken")
_TAKEN_ONE = literal_column("ARRAY(SELECT message_id FROM taken WHERE n = 1)", ARRAY(BigInteger))

# Built once: only the parameters change from batch to batch. One statement takes the
# waiting jobs and locks their messages and the job's own next rows, taken ones first.
_LOCK = (
    select(
        EmailMessage.id,
        EmailMessage.idempotency_key,
        EmailMessage.to_address,
        EmailMessage.template,
        EmailMessage.context,
        EmailMessage.subject,
        EmailMessage.headers,
        case(
            (User.is_active.is_(False), "suppressed: the user is inactive"),
            (
                and_(
                    EmailMessage.promotion_run_id.is_not(None),
                    User.unsubscribed_at.is_not(None),
                ),
                "suppressed: the user unsubscribed from promotions",
            ),
            (
                or_(
                    Suppression.reason.in_(SUPPRESSES_TRANSACTIONAL),
                    and_(
                        EmailMessage.promotion_run_id.is_not(None),
                        Suppression.reason.is_not(None),
                    ),
                ),
                literal("suppressed: the address is on the suppression list (")
                + cast(Suppression.reason, Text)
                + literal(")"),
            ),
        ),
        EmailMessage.promotion_run_id,
        _TAKEN.c.job_id,
        AcceptedEmail.message_id,
        AcceptedEmail.subject,
        AcceptedEmail.sent_at,
    )
    .outerjoin(User, User.id == EmailMessage.user_id)
    # Deliverability: the suppression list, and promotion runs the circuit breaker paused
    # (their rows stay pending until the run is resumed or cancelled).
    .outerjoin(Suppression, Suppression.address == func.lower(EmailMessage.to_address))
    .outerjoin(PromotionRun, PromotionRun.id == EmailMessage.promotion_run_id)
    .outerjoin(_TAKEN, and_(_TAKEN.c.message_id == EmailMessage.id, _TAKEN.c.n == 1))
    # The journal (`jobs.mail.journal`): an acceptance a lost transaction did not record.
    .outerjoin(AcceptedEmail, AcceptedEmail.id == EmailMessage.id)
    # Only ids, in one short array, and no LIMIT: a range (id > last), an OR or a sort
    # before a LIMIT would make the planner visit every pending row of the job.
    .where(
        EmailMessage.id
        == any_(func.array_cat(_TAKEN_ONE, bindparam("ids", type_=ARRAY(BigInteger)))),
        EmailMessage.status == EmailStatus.PENDING,
        PromotionRun.paused_at.is_(None),
        or_(EmailMessage.not_before.is_(None), EmailMessage.not_before <= func.now()),
    )
    .order_by(_TAKEN.c.job_id.is_(None), EmailMessage.id)  # taken messages are sent first
    .with_for_update(skip_locked=True, of=EmailMessage)
)


async def lock_batch(session: AsyncSession, ids: Sequence[int], *, take: int = 0) -> list[Pending]:
    """The pending rows among ``ids`` and the messages of up to ``take`` waiting
    one-email transactional jobs (oldest first), locked with their jobs
    (``taken_job`` set).

    Rows another job holds are skipped (that job sends them), so two jobs never
    send the same row; a row already ``sent`` is never returned, nor one whose
    ``not_before`` (``send_at=``) has not come yet. A row whose
    user is inactive (or, for a promotion, unsubscribed) comes back with
    ``suppress`` set; one the journal says the server accepted, with ``accepted``.
    The caller sends taken messages with its own and, in the same transaction,
    finishes the jobs of those it handled (`finish_taken`); the others go back to
    their own jobs at commit. Jobs that run already, or wait for a retry, keep
    their messages.

    On a connection in AUTOCOMMIT it opens the batch's transaction, in the same
    round trip (`jobs.db.begin.execute_first`), so it always runs, even for nothing.
    """
    params = {"ids": list(ids), "limit": max(take, 0)}
    found = []
    for *columns, taken_job, message_id, subject, sent_at in await execute_first(
        session, _LOCK, params
    ):
        accepted = (
            None if message_id is None else Accepted(columns[0], message_id, subject, sent_at)
        )
        found.append(Pending(*columns, taken_job=taken_job, accepted=accepted))
    return found


async def finish_taken(session: AsyncSession, job_ids: Sequence[int]) -> None:
    """Mark taken jobs succeeded: their messages were handled by the taker."""
    if job_ids:
        params = {"job_ids": list(job_ids)}
        await session.execute(queue_sql.START_TAKEN_JOBS, params)
        await session.execute(queue_sql.FINISH_TAKEN_JOBS, params)


# One statement: the outcomes, and the journal entries of the rows now recorded `sent`.
# Through the driver, its arrays in binary (`jobs.db.driver`): in text, SQLAlchemy's way,
# they cost the worker about 10 µs of CPU per email recorded.
_RECORD = """
    WITH settled AS (
        DELETE FROM email_accepted WHERE id = ANY(%(sent)b::bigint[])
    )
    UPDATE email_messages AS m SET
        status = v.status,
        attempts = m.attempts + v.tried,
        last_error = CASE WHEN v.status = 'sent' THEN NULL ELSE coalesce(v.error, m.last_error) END,
        failure_kind = v.failure_kind,
        message_id = coalesce(v.message_id, m.message_id),
        subject = coalesce(v.subject, m.subject),
        sent_at = coalesce(v.sent_at, m.sent_at)
    FROM unnest(
        %(ids)b::bigint[], %(statuses)b::text[], %(tried)b::int[],
        %(errors)b::text[], %(message_ids)b::text[], %(subjects)b::text[],
        %(sent_at)b::timestamptz[], %(failure_kinds)b::text[]
    ) AS v(id, status, tried, error, message_id, subject, sent_at, failure_kind)
    WHERE m.id = v.id
"""


async def record(session: AsyncSession, outcomes: Iterable[Outcome]) -> None:
    """Write every changed outcome in ONE statement, which also drops the journal
    entries (`jobs.mail.journal`) of the rows it records ``sent``."""
    rows = [o for o in outcomes if o.changed]
    if not rows:
        return
    await driver.execute(
        session,
        _RECORD,
        {
            "sent": [o.id for o in rows if o.status == EmailStatus.SENT],
            "ids": [o.id for o in rows],
            "statuses": [o.status.value for o in rows],
            "tried": [int(o.attempted) for o in rows],
            "errors": [o.error for o in rows],
            "message_ids": [o.message_id for o in rows],
            "subjects": [o.subject for o in rows],
            "sent_at": [o.sent_at for o in rows],
            "failure_kinds": [o.failure.value if o.failure else None for o in rows],
        },
    )


# Rows among :ids that the server accepted (the journal says so) but that are
# still pending become `sent`; rows a running job holds are skipped.
SETTLE_ACCEPTED = text(
    """
    UPDATE email_messages AS m SET
        status = 'sent', message_id = a.message_id, subject = coalesce(a.subject, m.subject),
        sent_at = a.sent_at, last_error = NULL, failure_kind = NULL
    FROM email_accepted AS a
    WHERE a.id = m.id
      AND m.id IN (SELECT id FROM email_messages
                    WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'pending'
                    FOR UPDATE SKIP LOCKED)
    """
)


def fail_pending_statement(ids: Sequence[int], kind: FailureKind, reason: str) -> Update:
    """Mark every still-pending row among ``ids`` failed (``kind``, ``reason``); rows
    that a running job holds are skipped (that job records them itself). Execute
    `SETTLE_ACCEPTED` first in the same transaction, so accepted rows become sent."""
    held = (
        select(EmailMessage.id)
        .where(EmailMessage.id.in_(list(ids)), EmailMessage.status == EmailStatus.PENDING)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(EmailMessage)
        .where(EmailMessage.id.in_(held))
        .values(status=EmailStatus.FAILED, failure_kind=kind, last_error=reason)
        .execution_options(synchronize_session=False)
    )


async def fail_pending(
    session: AsyncSession, ids: Sequence[int], kind: FailureKind, reason: str
) -> int:
    """`fail_pending_statement`, executed after `SETTLE_ACCEPTED`; how many rows it failed."""
    await session.execute(SETTLE_ACCEPTED, {"ids": list(ids)})
    result = await session.execute(fail_pending_statement(ids, kind, reason))
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult


def retryable() -> ColumnElement[bool]:
    """Failed rows that may safely go back to pending (see the module docstring)."""
    return and_(
        EmailMessage.status == EmailStatus.FAILED,
        EmailMessage.context.is_not(None),
        EmailMessage.failure_kind.in_(RETRYABLE),
    )


def reset_retryable(ids: list[int]) -> Update:
    """Put the retryable failed rows among ``ids`` back to pending."""
    return (
        update(EmailMessage)
        .where(EmailMessage.id.in_(ids), retryable())
        .values(status=EmailStatus.PENDING, failure_kind=None)
        .execution_options(synchronize_session=False)
    )


_NOT_YET_DUE = (
    select(EmailMessage.id, EmailMessage.not_before)
    .where(
        EmailMessage.id == _ids(),
        EmailMessage.status == EmailStatus.PENDING,
        EmailMessage.not_before > func.now(),
    )
    .order_by(EmailMessage.id)
)


async def not_yet_due(session: AsyncSession, ids: Sequence[int]) -> tuple[list[int], datetime]:
    """The pending rows among ``ids`` whose ``not_before`` has not come (a job ran
    early: a retry, a re-queue, another job's claim), and the earliest such time."""
    rows = (await session.execute(_NOT_YET_DUE, {"ids": list(ids)})).all()
    if not rows:
        return [], datetime.max
    return [row[0] for row in rows], min(row[1] for row in rows if row[1] is not None)
