"""Browsing jobs and emails: one page of jobs, one job in full, emails by recipient,
status, kind or campaign, and the delivery job of each. `jobs list/show/emails` and
the dashboard read through here; every query pages on an index (migration 0011).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from jobs.db.queue_sql import JOB_DETAIL, JOB_EVENTS, JOBS_OF_MESSAGES, JOBS_PAGE
from jobs.errors import JobsError
from jobs.mail import ledger
from jobs.models import Campaign, EmailMessage, EmailStatus, PromotionRun
from jobs.results.state import Result
from jobs.results.store import read_result

_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")

# procrastinate_job_status labels (pinned by tests/integration/test_queue_sql.py)
JOB_STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted")
MAX_PAGE = 500


class BrowseError(JobsError, ValueError):
    """A filter that cannot be applied (unknown status, absurd limit)."""


@dataclass(frozen=True)
class JobFilter:
    queue: str | None = None
    task: str | None = None
    status: str | None = None
    age: timedelta | None = None  # deferred within this long

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in JOB_STATUSES:
            raise BrowseError(
                f"unknown job status {self.status!r}: use one of {', '.join(JOB_STATUSES)}"
            )
        for name in ("queue", "task"):
            value = getattr(self, name)
            if value is not None and (not value or len(value) > 128):
                raise BrowseError(f"invalid {name} {value!r}: 1 to 128 characters")


@dataclass(frozen=True)
class JobRow:
    id: int
    queue: str
    task: str
    status: str
    attempts: int
    scheduled_at: datetime | None
    last_event_at: datetime | None
    last_event: str | None


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise BrowseError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    return limit


def list_jobs(
    session: Session, filters: JobFilter, *, limit: int = 50, before_id: int | None = None
) -> list[JobRow]:
    """Jobs matching ``filters``, newest first; the next page starts ``before_id`` the last."""
    params = {
        "queue": filters.queue,
        "task": filters.task,
        "status": filters.status,
        "age": filters.age,
        "before_id": before_id,
        "limit": _limit(limit),
    }
    # Plan for these values: a generic plan (psycopg prepares a statement run 5 times) could
    # not drop the unused filters and pick the index of the ones used.
    session.execute(_CUSTOM_PLANS)
    return [JobRow(*row) for row in session.execute(JOBS_PAGE, params)]


@dataclass(frozen=True)
class EmailRow:
    id: int
    to_address: str
    kind: str
    subject: str | None
    status: str
    failure_kind: str | None
    last_error: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    campaign: str | None
    job_id: int | None = None


@dataclass(frozen=True)
class Event:
    type: str
    at: datetime | None


@dataclass
class JobDetail:
    id: int
    queue: str
    task: str
    status: str
    priority: int
    lock: str | None
    queueing_lock: str | None
    args: dict[str, Any]
    scheduled_at: datetime | None
    attempts: int
    abort_requested: bool
    worker_id: int | None
    events: list[Event] = field(default_factory=list)
    result: Result | None = None
    emails: list[EmailRow] = field(default_factory=list)


def _emails_query() -> Select[*tuple[Any, ...]]:
    query: Select[*tuple[Any, ...]] = (
        select(
            EmailMessage.id,
            EmailMessage.to_address,
            EmailMessage.kind,
            EmailMessage.subject,
            EmailMessage.status,
            EmailMessage.failure_kind,
            EmailMessage.last_error,
            EmailMessage.attempts,
            EmailMessage.created_at,
            EmailMessage.sent_at,
            Campaign.name,
        )
        .outerjoin(PromotionRun, PromotionRun.id == EmailMessage.promotion_run_id)
        .outerjoin(Campaign, Campaign.id == PromotionRun.campaign_id)
    )
    return query


def _email_row(row: Any, job_id: int | None = None) -> EmailRow:
    (id_, to, kind, subject, status, failure, error, attempts, created, sent, campaign) = row
    return EmailRow(
        id=id_,
        to_address=to,
        kind=kind,
        subject=subject,
        status=str(status),
        failure_kind=None if failure is None else str(failure),
        last_error=error,
        attempts=attempts,
        created_at=created,
        sent_at=sent,
        campaign=campaign,
        job_id=job_id,
    )


def show_job(session: Session, job_id: int, *, max_emails: int = 200) -> JobDetail | None:
    """One job with its events, result (or error) and the ledger rows it carries."""
    row = session.execute(JOB_DETAIL, {"job_id": job_id}).first()
    if row is None:
        return None
    detail = JobDetail(*row)
    detail.events = [Event(*e) for e in session.execute(JOB_EVENTS, {"job_id": job_id})]
    detail.result = read_result(session, job_id)
    ids = ledger.message_ids(detail.task, detail.args)[:max_emails]
    if ids:
        query = _emails_query().where(EmailMessage.id.in_(ids)).order_by(EmailMessage.id)
        detail.emails = [_email_row(r, job_id) for r in session.execute(query)]
    return detail


def search_emails(
    session: Session,
    *,
    to: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    campaign: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[EmailRow]:
    """Ledger rows, newest first, each with the id of the delivery job that carries it."""
    query = _emails_query()
    if to:
        query = query.where(func.lower(EmailMessage.to_address) == to.strip().lower())
    if status:
        try:
            query = query.where(EmailMessage.status == EmailStatus(status))
        except ValueError:
            names = ", ".join(s.value for s in EmailStatus)
            raise BrowseError(f"unknown email status {status!r}: use one of {names}") from None
    if kind:
        query = query.where(EmailMessage.kind == kind)
    if campaign:  # a semi-join on the run ids: ix_email_messages_promotion_run_id
        runs = select(PromotionRun.id).join(Campaign).where(Campaign.name == campaign)
        query = query.where(EmailMessage.promotion_run_id.in_(runs))
    if before_id is not None:
        query = query.where(EmailMessage.id < before_id)
    query = query.order_by(EmailMessage.id.desc()).limit(_limit(limit))
    rows = session.execute(query).all()
    jobs = job_ids_of(session, [int(r[0]) for r in rows])
    return [_email_row(r, jobs.get(int(r[0]))) for r in rows]


def job_ids_of(session: Session, message_ids: list[int]) -> dict[int, int]:
    """message id -> the id of the delivery job carrying it (when it still exists)."""
    if not message_ids:
        return {}
    rows = session.execute(JOBS_OF_MESSAGES, {"message_ids": message_ids})
    return {int(m): int(j) for m, j in rows if j is not None}
