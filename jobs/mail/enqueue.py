"""The public enqueue API: a ledger row and its delivery job, in the caller's transaction.

Nothing here commits. Roll the caller's transaction back and neither the row
nor the job exists; commit it and a worker delivers the email.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from procrastinate import PsycopgConnector, SyncPsycopgConnector
from procrastinate.jobs import Job
from procrastinate.manager import JobManager
from sqlalchemy import Select, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from jobs.db.queue_sql import DEFER_NEW_MESSAGE
from jobs.errors import InvalidArgument, InvalidContext, UnknownUser
from jobs.mail.address import normalize_address
from jobs.mail.message import check_header
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


def delivery_job(message_ids: list[int], *, priority: int = TRANSACTIONAL_PRIORITY) -> Job:
    """The `email.deliver` job for ``message_ids``."""
    return Job(
        id=None,
        queue=EMAIL_QUEUE,
        task_name=DELIVER_TASK,
        priority=priority,
        lock=None,
        queueing_lock=None,
        task_kwargs={"message_ids": list(message_ids)},
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
    session: AsyncSession, message_ids: list[int], *, priority: int = TRANSACTIONAL_PRIORITY
) -> int:
    """`defer_delivery` for an `AsyncSession`."""
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    [job] = await _async_jobs.batch_defer_jobs_async(
        [delivery_job(message_ids, priority=priority)], connection=raw
    )
    assert job.id is not None
    return job.id


def columns_of(model: type[Base]) -> str:
    return ", ".join(column.name for column in model.__table__.columns)


def job_params(priority: int = TRANSACTIONAL_PRIORITY) -> dict[str, Any]:
    """The parameters of `DEFER_NEW_MESSAGE`."""
    return {"queue": EMAIL_QUEUE, "task": DELIVER_TASK, "priority": priority}


# Explicit columns let SQLAlchemy map (and cache) the result by position.
_ENQUEUE = select(EmailMessage).from_statement(
    text(
        f"""
        WITH message AS (
            INSERT INTO email_messages
                (idempotency_key, kind, user_id, to_address, template, context, subject)
            SELECT :key, :kind, CAST(:user_id AS bigint), :to_address, :template,
                   CAST(:context AS jsonb), :subject
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
) -> dict[str, Any]:
    """Validate everything before the database is touched; the statement's parameters.

    A user_id that names no user inserts nothing (the statement cannot violate the
    foreign key), and `_found` turns that into `UnknownUser`.
    """
    address = normalize_address(to)
    ensure_template(template, search_path(get_settings().MAIL_TEMPLATE_DIR))
    checked_subject = check_text("subject", subject, optional=True)
    if checked_subject is not None:
        check_header("Subject", checked_subject)
    if check_text("idempotency_key", idempotency_key, optional=True) == "":
        raise InvalidArgument("idempotency_key is empty")
    check_text("kind", kind, optional=True)
    check_id("user_id", user_id, optional=True)
    try:
        context_json = json.dumps(check_context(context), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidContext(f"email context must be JSON-serializable: {exc}") from None
    return {
        "key": idempotency_key or f"email:{uuid.uuid4()}",
        "kind": kind or template,
        "user_id": user_id,
        "to_address": address,
        "template": template,
        "context": context_json,
        "subject": subject,
        **job_params(),
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
) -> EmailMessage:
    """Insert the ledger row and defer its delivery, on ``session``'s transaction.

    A repeated ``idempotency_key`` returns the existing message and defers nothing.
    Raises a `ValueError` subclass for a bad address, template or context,
    before anything is written.
    """
    params = _enqueue_params(
        to=to,
        template=template,
        context=context,
        subject=subject,
        idempotency_key=idempotency_key,
        kind=kind,
        user_id=user_id,
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
    )
    message: EmailMessage | None = (await session.scalars(_ENQUEUE, params)).one_or_none()
    if message is not None:
        return message
    return _found((await session.scalars(_by_key(params["key"]))).one_or_none(), params)
