"""The public enqueue API: a ledger row and its delivery job, in the caller's transaction.

Nothing here commits. Roll the caller's transaction back and neither the row
nor the job exists; commit it and a worker delivers the email.

A caller's ``idempotency_key`` is stored as ``user:<key>`` (`CALLER_KEY_PREFIX`):
the keys `jobs` makes itself (``welcome:<user id>``, ``promotion:<run>:<user>``,
``email:<uuid>``) live apart, so no application key can ever take one of them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from procrastinate import PsycopgConnector, SyncPsycopgConnector
from procrastinate.jobs import Job
from procrastinate.manager import JobManager
from sqlalchemy import Select, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from jobs.db.queue_sql import DEFER_NEW_MESSAGE
from jobs.errors import InvalidArgument, InvalidContext, InvalidSchedule, UnknownUser
from jobs.mail.address import normalize_address
from jobs.mail.message import check_extra_headers, check_subject
from jobs.mail.storable import check_context, check_id, check_text
from jobs.mail.templates import ensure_template, search_path
from jobs.models import Base, EmailMessage
from jobs.settings import get_settings
from jobs.tasks import DELIVER_TASK, EMAIL_QUEUE, TRANSACTIONAL_PRIORITY

# Never opened: they only run procrastinate's defer query on the caller's own
# connection, by task name, so the producer never imports the app, its tasks or
# any worker code (and the sync path works while an async app is open).
_sync_jobs = JobManager(SyncPsycopgConnector())
_async_jobs = JobManager(PsycopgConnector())


def delivery_job(
    message_ids: list[int],
    *,
    priority: int = TRANSACTIONAL_PRIORITY,
    scheduled_at: datetime | None = None,
    throttled_since: datetime | None = None,
) -> Job:
    """The `email.deliver` job for ``message_ids`` (due at ``scheduled_at``, None: now);
    ``throttled_since``: when their receiver first asked to slow down (`jobs.tasks.delivery`)."""
    kwargs: dict[str, Any] = {"message_ids": list(message_ids)}
    if throttled_since is not None:
        kwargs["throttled_since"] = throttled_since.isoformat()
    return Job(
        id=None,
        queue=EMAIL_QUEUE,
        task_name=DELIVER_TASK,
        priority=priority,
        lock=None,
        queueing_lock=None,
        task_kwargs=kwargs,
        scheduled_at=scheduled_at,
    )


def defer_delivery(
    session: Session, message_ids: list[int], *, priority: int = TRANSACTIONAL_PRIORITY
) -> int:
    """Defer one delivery job for ``message_ids`` on ``session``'s connection."""
    raw = session.connection().connection.driver_connection
    [job] = _sync_jobs.batch_defer_jobs([delivery_job(message_ids, priority=priority)], raw)
    assert job.id is not None
    return job.id


async def defer_delivery_async(
    session: AsyncSession,
    message_ids: list[int],
    *,
    priority: int = TRANSACTIONAL_PRIORITY,
    scheduled_at: datetime | None = None,
    throttled_since: datetime | None = None,
) -> int:
    """`defer_delivery` for an `AsyncSession`."""
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    job = delivery_job(
        message_ids, priority=priority, scheduled_at=scheduled_at, throttled_since=throttled_since
    )
    [job] = await _async_jobs.batch_defer_jobs_async([job], connection=raw)
    assert job.id is not None
    return job.id


def columns_of(model: type[Base]) -> str:
    return ", ".join(column.name for column in model.__table__.columns)


def job_params(
    priority: int = TRANSACTIONAL_PRIORITY, scheduled_at: datetime | None = None
) -> dict[str, Any]:
    """The parameters of `DEFER_NEW_MESSAGE` (``scheduled_at`` None: due now)."""
    return {
        "queue": EMAIL_QUEUE,
        "task": DELIVER_TASK,
        "priority": priority,
        "scheduled_at": scheduled_at,
    }


CALLER_KEY_PREFIX = "user:"


def caller_key(idempotency_key: str) -> str:
    """Where a caller's ``idempotency_key`` is stored (see the module docstring)."""
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise InvalidContext("idempotency_key must be a non-empty string")
    return CALLER_KEY_PREFIX + idempotency_key


def send_time(send_at: datetime | None, delay: timedelta | None) -> datetime | None:
    """When the email may go: ``send_at`` (timezone-aware), now + ``delay``, or None (now)."""
    if send_at is not None and delay is not None:
        raise InvalidSchedule("give send_at or delay, not both")
    if send_at is not None:
        if not isinstance(send_at, datetime) or send_at.utcoffset() is None:
            raise InvalidSchedule("send_at must be a timezone-aware datetime")
        try:
            return send_at.astimezone(UTC)
        except OverflowError:
            raise InvalidSchedule("send_at is out of range") from None
    if delay is not None:
        if not isinstance(delay, timedelta) or delay < timedelta(0):
            raise InvalidSchedule("delay must be a timedelta of zero or more")
        try:
            return datetime.now(UTC) + delay
        except OverflowError:
            raise InvalidSchedule("delay is too long") from None
    return None


# Explicit columns let SQLAlchemy map (and cache) the result by position.
_ENQUEUE = select(EmailMessage).from_statement(
    text(
        f"""
        WITH message AS (
            INSERT INTO email_messages
                (idempotency_key, kind, user_id, to_address, template, context, subject,
                 headers, not_before)
            SELECT :key, :kind, CAST(:user_id AS bigint), :to_address, :template,
                   CAST(:context AS jsonb), :subject, CAST(:headers AS jsonb),
                   CAST(:scheduled_at AS timestamptz)
             WHERE CAST(:user_id AS bigint) IS NULL
                OR EXISTS (SELECT 1 FROM users WHERE id = CAST(:user_id AS bigint))
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING {columns_of(EmailMessage)}
        ), {DEFER_NEW_MESSAGE}
        SELECT {columns_of(EmailMessage)} FROM message CROSS JOIN job
        """
    ).columns(*EmailMessage.__table__.columns)
)


def _enqueue_params(
    *,
    to: str,
    template: str,
    context: Mapping[str, Any],
    subject: str | None,
    idempotency_key: str | None,
    kind: str | None,
    user_id: int | None,
    send_at: datetime | None = None,
    delay: timedelta | None = None,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate everything before the database is touched; the statement's parameters.

    A user_id that names no user inserts nothing (the statement cannot violate the
    foreign key), and `_found` turns that into `UnknownUser`.
    """
    address = normalize_address(to)
    ensure_template(template, search_path(get_settings().MAIL_TEMPLATE_DIR))
    checked_subject = check_text("subject", subject, optional=True)
    if checked_subject is not None:
        check_subject(checked_subject)
    if check_text("idempotency_key", idempotency_key, optional=True) == "":
        raise InvalidArgument("idempotency_key is empty")
    check_text("kind", kind, optional=True)
    check_id("user_id", user_id, optional=True)
    if headers is not None and not isinstance(headers, Mapping):
        raise InvalidArgument(f"headers must be a mapping, not {type(headers).__name__}")
    for name, value in (headers or {}).items():
        check_text("a header name", name)
        check_text(f"header {name}", value)
    extra = check_extra_headers(headers or {})
    if reply_to is not None:
        extra["Reply-To"] = normalize_address(reply_to)
    scheduled_at = send_time(send_at, delay)
    try:
        context_json = json.dumps(check_context(context), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidContext(f"email context must be JSON-serializable: {exc}") from None
    return {
        "key": caller_key(idempotency_key)
        if idempotency_key is not None
        else f"email:{uuid.uuid4()}",
        "kind": kind or template,
        "user_id": user_id,
        "to_address": address,
        "template": template,
        "context": context_json,
        "subject": subject,
        "headers": json.dumps(extra) if extra else None,
        **job_params(scheduled_at=scheduled_at),
    }


def _by_key(key: str) -> Select[EmailMessage]:
    return select(EmailMessage).where(EmailMessage.idempotency_key == key)


def _found(message: EmailMessage | None, params: dict[str, Any]) -> EmailMessage:
    if message is None:
        raise UnknownUser(f"no user has id {params['user_id']}: nothing was enqueued")
    return message


def enqueue_email(
    session: Session,
    *,
    to: str,
    template: str,
    context: Mapping[str, Any],
    subject: str | None = None,
    idempotency_key: str | None = None,
    kind: str | None = None,
    user_id: int | None = None,
    send_at: datetime | None = None,
    delay: timedelta | None = None,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """Insert the ledger row and defer its delivery, on ``session``'s transaction.

    A repeated ``idempotency_key`` returns the existing message and defers nothing
    (the key is stored as ``user:<key>``, apart from the keys `jobs` makes).
    ``send_at`` (timezone-aware) or ``delay``: not sent before then.
    ``reply_to`` (default MAIL_REPLY_TO) and ``headers`` (extra header fields;
    not those `jobs` writes: From, To, Subject, Date, Message-ID, Reply-To, List-*, ...).
    Raises a `ValueError` subclass for a bad address, template, context, subject,
    header or time, before anything is written.
    """
    params = _enqueue_params(
        to=to,
        template=template,
        context=context,
        subject=subject,
        idempotency_key=idempotency_key,
        kind=kind,
        user_id=user_id,
        send_at=send_at,
        delay=delay,
        reply_to=reply_to,
        headers=headers,
    )
    message: EmailMessage | None = session.scalars(_ENQUEUE, params).one_or_none()
    return message or _found(session.scalars(_by_key(params["key"])).one_or_none(), params)


async def enqueue_email_async(
    session: AsyncSession,
    *,
    to: str,
    template: str,
    context: Mapping[str, Any],
    subject: str | None = None,
    idempotency_key: str | None = None,
    kind: str | None = None,
    user_id: int | None = None,
    send_at: datetime | None = None,
    delay: timedelta | None = None,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """`enqueue_email` for an `AsyncSession`."""
    params = _enqueue_params(
        to=to,
        template=template,
        context=context,
        subject=subject,
        idempotency_key=idempotency_key,
        kind=kind,
        user_id=user_id,
        send_at=send_at,
        delay=delay,
        reply_to=reply_to,
        headers=headers,
    )
    message: EmailMessage | None = (await session.scalars(_ENQUEUE, params)).one_or_none()
    if message is not None:
        return message
    return _found((await session.scalars(_by_key(params["key"]))).one_or_none(), params)
