"""The delivery side of the ``email_messages`` ledger: lock a batch, record outcomes.

Each function is one round trip on the caller's session and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Update,
    and_,
    any_,
    bindparam,
    case,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import EmailMessage, EmailStatus, User

# The reason written on the rows of a job an operator cancelled (`jobs cancel`).
CANCELLED = "cancelled: job {job_id} was cancelled by an operator"


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
    suppress: str | None  # why not to send it (user inactive, or unsubscribed from promotions)


@dataclass
class Outcome:
    """What happened to one row in this run; `record` writes it."""

    id: int
    status: EmailStatus = EmailStatus.PENDING
    attempted: bool = False  # counts as a delivery attempt
    error: str | None = None
    message_id: str | None = None
    subject: str | None = None
    sent_at: datetime | None = None

    @property
    def changed(self) -> bool:
        return self.status != EmailStatus.PENDING or self.attempted


def _ids(name: str = "ids") -> Any:
    return any_(bindparam(name, type_=ARRAY(BigInteger)))


# Built once: only the parameters change from batch to batch.
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
        ),
    )
    .outerjoin(User, User.id == EmailMessage.user_id)
    .where(
        EmailMessage.id == _ids(),
        EmailMessage.status == EmailStatus.PENDING,
        EmailMessage.id > bindparam("after"),
    )
    .order_by(EmailMessage.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True, of=EmailMessage)
)


async def lock_batch(
    session: AsyncSession, ids: Sequence[int], *, after: int, limit: int
) -> list[Pending]:
    """The next ``limit`` pending rows among ``ids`` with id > ``after``, locked.

    Rows another job holds are skipped (that job sends them), so two jobs never
    send the same row; a row already ``sent`` is never returned. A row whose
    user is inactive (or, for a promotion, unsubscribed) comes back with
    ``suppress`` set.
    """
    result = await session.execute(_LOCK, {"ids": list(ids), "after": after, "limit": limit})
    return [Pending(*row) for row in result.all()]


_RECORD = text(
    """
    UPDATE email_messages AS m SET
        status = v.status,
        attempts = m.attempts + v.tried,
        last_error = CASE WHEN v.status = 'sent' THEN NULL ELSE coalesce(v.error, m.last_error) END,
        message_id = coalesce(v.message_id, m.message_id),
        subject = coalesce(v.subject, m.subject),
        sent_at = coalesce(v.sent_at, m.sent_at)
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:tried AS int[]),
        CAST(:errors AS text[]), CAST(:message_ids AS text[]), CAST(:subjects AS text[]),
        CAST(:sent_at AS timestamptz[])
    ) AS v(id, status, tried, error, message_id, subject, sent_at)
    WHERE m.id = v.id
    """
)


async def record(session: AsyncSession, outcomes: Iterable[Outcome]) -> None:
    """Write every changed outcome in ONE statement."""
    rows = [o for o in outcomes if o.changed]
    if not rows:
        return
    await session.execute(
        _RECORD,
        {
            "ids": [o.id for o in rows],
            "statuses": [o.status.value for o in rows],
            "tried": [int(o.attempted) for o in rows],
            "errors": [o.error for o in rows],
            "message_ids": [o.message_id for o in rows],
            "subjects": [o.subject for o in rows],
            "sent_at": [o.sent_at for o in rows],
        },
    )


def fail_pending_statement(ids: Sequence[int], reason: str) -> Update:
    """Mark every still-pending row among ``ids`` failed with ``reason``; rows that
    a running job holds are skipped (that job records them itself)."""
    held = (
        select(EmailMessage.id)
        .where(EmailMessage.id.in_(list(ids)), EmailMessage.status == EmailStatus.PENDING)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(EmailMessage)
        .where(EmailMessage.id.in_(held))
        .values(status=EmailStatus.FAILED, last_error=reason)
        .execution_options(synchronize_session=False)
    )


async def fail_pending(session: AsyncSession, ids: Sequence[int], reason: str) -> int:
    """`fail_pending_statement`, executed; how many rows it failed."""
    result = await session.execute(fail_pending_statement(ids, reason))
    return int(result.rowcount)  # type: ignore[attr-defined]
