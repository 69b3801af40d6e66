"""Delivering ledger rows: render, send, record each outcome.

Only rows still ``pending`` are sent, under a row lock, so two jobs never send
the same row and a retry never resends a ``sent`` one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage as MimeMessage

import aiosmtplib
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from jobs import metrics
from jobs.errors import JobsError
from jobs.mail import smtp
from jobs.mail.config import MailConfig
from jobs.mail.message import build_message, message_id_for
from jobs.mail.templates import render
from jobs.models import EmailMessage, EmailStatus

logger = logging.getLogger(__name__)

# `last_error` of a row failed because transient errors outlasted every retry: the
# one kind of failure `jobs retry-failed` may reset to pending (see jobs.ledger).
TRANSIENT_EXHAUSTED = "transient, retries exhausted: "


@dataclass
class Report:
    """What one delivery pass did; ``retry`` is the transient error to re-raise."""

    sent: int = 0
    failed: int = 0
    retry: BaseException | None = None

    def summary(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed}


def compose(row: EmailMessage, mail: MailConfig) -> MimeMessage:
    """Render and build the MIME message for one ledger row."""
    context = {**mail.template_globals, **(row.context or {})}
    rendered = render(row.template, context, mail.template_dirs)
    subject = row.subject or rendered.subject
    if not subject:
        raise JobsError(f"template {row.template!r} sets no subject and none was given")
    row.subject = subject
    return build_message(
        sender=mail.sender,
        sender_name=mail.sender_name,
        to=row.to_address,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(row.idempotency_key, mail.sender),
    )


async def lock_pending(session: AsyncSession, ids: list[int]) -> list[EmailMessage]:
    """The ``pending`` rows among ``ids``, locked; rows another job holds are skipped."""
    query = (
        select(EmailMessage)
        .where(EmailMessage.id.in_(ids), EmailMessage.status == EmailStatus.PENDING)
        .order_by(EmailMessage.id)
        .with_for_update(skip_locked=True)
    )
    return list((await session.scalars(query)).all())


def _fail(row: EmailMessage, reason: str, report: Report) -> None:
    row.status = EmailStatus.FAILED
    row.last_error = reason
    report.failed += 1
    metrics.EMAILS.labels("failed").inc()
    logger.warning("email %s failed: %s", row.id, reason)


async def deliver_messages(
    session: AsyncSession, ids: list[int], *, mail: MailConfig, final_attempt: bool
) -> Report:
    """Send the pending rows among ``ids``; never commits.

    A transient error stops the pass: the rows not yet sent keep ``pending``
    (or become ``failed`` on the final attempt) and the error is returned in
    `Report.retry` so the caller can commit what was sent, then raise it.
    """
    report = Report()
    rows = await lock_pending(session, ids)
    client: aiosmtplib.SMTP | None = None
    try:
        for index, row in enumerate(rows):
            row.attempts += 1
            try:
                message = compose(row, mail)
            except JobsError as exc:
                _fail(row, str(exc), report)
                continue
            try:
                if client is None:
                    client = smtp.client(mail.smtp)
                    await client.connect()
                with metrics.DELIVERY_DURATION.time():
                    await smtp.send(client, message)
            except smtp.Rejected as exc:
                _fail(row, str(exc), report)
                continue
            except smtp.TRANSIENT_ERRORS as exc:
                reason = f"{smtp.describe(exc)} (server {mail.smtp.address})"
                for pending in rows[index:]:
                    if final_attempt:
                        _fail(pending, TRANSIENT_EXHAUSTED + reason, report)
                    else:
                        pending.last_error = reason
                        metrics.EMAILS.labels("deferred").inc()
                report.retry = exc
                logger.info("delivery interrupted, will retry: %s", reason)
                break
            row.status = EmailStatus.SENT
            row.message_id = message["Message-ID"]
            row.sent_at = datetime.now(UTC)
            row.last_error = None
            report.sent += 1
            metrics.EMAILS.labels("sent").inc()
    finally:
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except smtp.TRANSIENT_ERRORS:
                client.close()
    return report
