"""The public enqueue API: a ledger row and its delivery job, in the caller's transaction.

Nothing here commits. Roll the caller's transaction back and neither the row
nor the job exists; commit it and a worker delivers the email.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from procrastinate import SyncPsycopgConnector
from procrastinate.jobs import Job
from procrastinate.manager import JobManager
from sqlalchemy import Insert, Select, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from jobs.address import normalize_address
from jobs.app import app
from jobs.errors import InvalidContext
from jobs.mail.message import check_header
from jobs.mail.templates import ensure_template, search_path
from jobs.models import EmailMessage
from jobs.settings import get_settings
from jobs.tasks.email_tasks import deliver

# Transactional mail (welcome, password reset) is fetched before bulk chunks.
TRANSACTIONAL_PRIORITY = 10
BULK_PRIORITY = 0

# Never opened: it only runs the defer query on the caller's own connection, so
# the sync path works even while the async app is open in the same process.
_sync_jobs = JobManager(SyncPsycopgConnector())


def delivery_job(message_ids: list[int], *, priority: int = TRANSACTIONAL_PRIORITY) -> Job:
    """The `email.deliver` job for ``message_ids``."""
    return deliver.configure(priority=priority).job.evolve(
        task_kwargs={"message_ids": list(message_ids)}
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
    [job] = await app.job_manager.batch_defer_jobs_async(
        [delivery_job(message_ids, priority=priority)], connection=raw
    )
    assert job.id is not None
    return job.id


def _ledger_insert(
    *,
    to: str,
    template: str,
    context: Mapping[str, Any],
    subject: str | None,
    idempotency_key: str | None,
    kind: str | None,
    user_id: int | None,
) -> tuple[Insert, str]:
    """Validate everything, then build the INSERT; nothing touches the database."""
    address = normalize_address(to)
    ensure_template(template, search_path(get_settings().MAIL_TEMPLATE_DIR))
    if subject is not None:
        check_header("Subject", subject)
    try:
        context = json.loads(json.dumps(dict(context)))
    except (TypeError, ValueError) as exc:
        raise InvalidContext(f"email context must be JSON-serializable: {exc}") from None
    key = idempotency_key or f"email:{uuid.uuid4()}"
    statement = (
        insert(EmailMessage)
        .values(
            idempotency_key=key,
            kind=kind or template,
            user_id=user_id,
            to_address=address,
            template=template,
            context=context,
            subject=subject,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(EmailMessage)
    )
    return statement, key


def _by_key(key: str) -> Select[EmailMessage]:
    return select(EmailMessage).where(EmailMessage.idempotency_key == key)


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
    statement, key = _ledger_insert(
        to=to,
        template=template,
        context=context,
        subject=subject,
        idempotency_key=idempotency_key,
        kind=kind,
        user_id=user_id,
    )
    message: EmailMessage | None = session.scalars(statement).one_or_none()
    if message is None:
        return session.scalars(_by_key(key)).one()
    defer_delivery(session, [message.id])
    return message


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
    statement, key = _ledger_insert(
        to=to,
        template=template,
        context=context,
        subject=subject,
        idempotency_key=idempotency_key,
        kind=kind,
        user_id=user_id,
    )
    message: EmailMessage | None = (await session.scalars(statement)).one_or_none()
    if message is None:
        return (await session.scalars(_by_key(key))).one()
    await defer_delivery_async(session, [message.id])
    return message
