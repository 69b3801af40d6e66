"""Salvage: which ledger rows of a given-up job fail, and which an operator may resend.

Only `email.deliver` jobs carry ledger rows (``message_ids``). When such a job
is given up (its worker kept dying, or an operator cancelled it) its pending
rows are marked failed, so none stays pending with no job to send it. When an
operator re-queues a failed job, only its *retryable* failed rows go back to
pending:

- failed because transient errors (SMTP 4xx, timeouts, dropped connections)
  outlasted every retry — ``last_error`` starts with
  `jobs.mail.delivery.TRANSIENT_EXHAUSTED`; or
- failed because the worker running the job kept dying (`WORKER_DIED`);
- and the row still has its template context (retention may have dropped it).

Never reset: permanent refusals (SMTP 5xx), template or address errors, and
cancelled rows — sending those again would fail the same way, or send what
someone decided not to send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, or_, update

from jobs.mail.delivery import TRANSIENT_EXHAUSTED
from jobs.models import EmailMessage, EmailStatus
from jobs.tasks import DELIVER_TASK

WORKER_DIED = "worker died {n} times"
_WORKER_DIED_PREFIX = "worker died "


def message_ids(task_name: str, args: Mapping[str, Any]) -> list[int]:
    """The ledger ids a job carries (none unless it is an `email.deliver` job)."""
    if task_name != DELIVER_TASK:
        return []
    return [int(i) for i in args.get("message_ids") or ()]


def retryable() -> ColumnElement[bool]:
    """Failed rows that may safely go back to pending (see the module docstring)."""
    return and_(
        EmailMessage.status == EmailStatus.FAILED,
        EmailMessage.context.is_not(None),
        or_(
            EmailMessage.last_error.startswith(TRANSIENT_EXHAUSTED, autoescape=True),
            EmailMessage.last_error.startswith(_WORKER_DIED_PREFIX, autoescape=True),
        ),
    )


def reset_retryable(ids: list[int]) -> Update:
    """Put the retryable failed rows among ``ids`` back to pending."""
    return (
        update(EmailMessage)
        .where(EmailMessage.id.in_(ids), retryable())
        .values(status=EmailStatus.PENDING)
        .execution_options(synchronize_session=False)
    )
