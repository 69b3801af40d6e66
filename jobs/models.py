"""SQLAlchemy models: the application tables `jobs` owns."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def text_enum(values: type[enum.StrEnum], name: str, length: int) -> Enum:
    """A string enum stored as its values in VARCHAR(``length``) with a CHECK constraint
    (no PostgreSQL enum type: adding a value needs no ALTER TYPE)."""
    return Enum(
        values,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda e: [m.value for m in e],
    )


class EmailStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class FailureKind(enum.StrEnum):
    """Why a ledger row is ``failed``, as data (``last_error`` keeps the words for humans)."""

    REJECTED = "rejected"  # the server refused it for good (5xx)
    INVALID = "invalid"  # it cannot be built: bad template, context or address
    TRANSIENT_EXHAUSTED = "transient_exhausted"  # 4xx/timeouts outlasted every retry
    WORKER_DIED = "worker_died"  # the worker running its job kept dying
    CANCELLED = "cancelled"  # an operator cancelled its job


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(Text)
    username: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # promotions

    __table_args__ = (Index("uq_users_email_lower", text("lower(email)"), unique=True),)

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, username={self.username!r})"


class EmailMessage(Base):
    """The ledger: one row per email, the source of truth for delivery."""

    __tablename__ = "email_messages"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(Text, unique=True)
    kind: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    to_address: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(Text)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    subject: Mapped[str | None] = mapped_column(Text)
    status: Mapped[EmailStatus] = mapped_column(
        text_enum(EmailStatus, "status", 16),
        server_default=EmailStatus.PENDING.value,
    )
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    failure_kind: Mapped[FailureKind | None] = mapped_column(
        text_enum(FailureKind, "failure_kind", 32)
    )
    message_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Promotions: extra MIME headers (List-Unsubscribe) and the run that queued the row.
    headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    promotion_run_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("promotion_runs.id", ondelete="SET NULL")
    )
    # Deliverability: what the recipient's side reported after sending (see jobs.feedback).
    feedback: Mapped[str | None] = mapped_column(Text)
    # send_at=/delay=: no job sends the row before this time (whichever claims it).
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # A promotion's rows (transactional rows, NULL here, are not held).
        Index(
            "ix_email_messages_promotion_run_id",
            "promotion_run_id",
            postgresql_where=text("promotion_run_id IS NOT NULL"),
        ),
        # Operations: `jobs status` counts by status over a recent window (index-only), and
        # retention finds the old contexts to drop without revisiting pruned rows.
        Index("ix_email_messages_created_at_status", "created_at", "status"),
        Index(
            "ix_email_messages_context_expiry",
            "created_at",
            postgresql_where=text("context IS NOT NULL"),
        ),
        # Deliverability: a bounce or complaint names its message by Message-ID
        # (jobs.feedback.events).
        Index(
            "ix_email_messages_message_id",
            "message_id",
            postgresql_where=text("message_id IS NOT NULL"),
        ),
        # The dashboard and `jobs emails`: a recipient's emails (case-insensitively), the
        # emails of a kind, and the few not sent, newest first (the pending ones too:
        # `jobs status`, the gauges).
        Index("ix_email_messages_to_address_lower", text("lower(to_address)"), "id"),
        Index("ix_email_messages_kind_id", "kind", "id"),
        Index(
            "ix_email_messages_unsent_status_id",
            "status",
            "id",
            postgresql_where=text("status <> 'sent'"),
        ),
    )

    def __repr__(self) -> str:
        return f"EmailMessage(id={self.id!r}, key={self.idempotency_key!r}, status={self.status!r})"


# --- Promotions ---------------------------------------------------


class Campaign(Base):
    """A promotion sent on every PROMOTION_CRON tick while ``active``."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    subject: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    link_path: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def __repr__(self) -> str:
        return f"Campaign(id={self.id!r}, name={self.name!r}, active={self.active!r})"


class PromotionRun(Base):
    """One fan-out of one campaign for one period; ``last_user_id`` is its keyset cursor."""

    __tablename__ = "promotion_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("campaigns.id"))
    period: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_user_id: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    total_users: Mapped[int] = mapped_column(server_default=text("0"))
    queued: Mapped[int] = mapped_column(server_default=text("0"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Deliverability: the circuit breaker pauses a run (no chunk is queued or sent
    # until `jobs promote --resume`); counts at the last resume are its new baseline.
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pause_reason: Mapped[str | None] = mapped_column(Text)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    baseline_sample: Mapped[int] = mapped_column(server_default=text("0"))
    baseline_bounces: Mapped[int] = mapped_column(server_default=text("0"))
    baseline_complaints: Mapped[int] = mapped_column(server_default=text("0"))

    __table_args__ = (UniqueConstraint("campaign_id", "period"),)

    def __repr__(self) -> str:
        return f"PromotionRun(id={self.id!r}, period={self.period!r})"


class PromotionRunCount(Base):
    """One shard of a promotion run's counts: the circuit breaker's (`jobs.feedback.breaker`)
    and the sent / failed / refused that `jobs status`, /metrics and the dashboard show.

    Kept by PostgreSQL (triggers on ``email_messages``, migration 0017): a statement
    that changes a run's rows adds what it changed to the shard of its backend, so a
    run's counts are the sums over its (at most 16) rows.
    """

    __tablename__ = "promotion_run_counts"

    run_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("promotion_runs.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    sample: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))  # sent or 5xx
    bounces: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))  # 5xx, hard
    complaints: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    sent: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    failed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    refused: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))  # 5xx

    def __repr__(self) -> str:
        return f"PromotionRunCount(run_id={self.run_id!r}, shard={self.shard!r})"


# Results -----------------------------------------------------------


class ResultStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobResult(Base):
    """What a procrastinate job produced: its value, or the error of its last attempt.

    No foreign key to ``procrastinate_jobs``: a result outlives the pruning of its
    job row. ``status = 'failed'`` describes the *last failed attempt*; whether
    the job is finally failed or waiting for a retry is procrastinate's status.
    """

    __tablename__ = "job_results"

    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    task_name: Mapped[str] = mapped_column(Text)
    status: Mapped[ResultStatus] = mapped_column(text_enum(ResultStatus, "status", 16))
    # None is SQL NULL ("no value"), not the JSON literal null.
    result: Mapped[Any | None] = mapped_column(JSONB(none_as_null=True))
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )

    def __repr__(self) -> str:
        return f"JobResult(job_id={self.job_id!r}, status={self.status!r})"


# Delivery ---------------------------------------------------------


class MailRateLimit(Base):
    """Send slots shared by every worker: the next free slot per SMTP server.

    One row per limited server; a worker reserves slots by moving ``next_free``
    forward in one atomic UPDATE (see `jobs.mail.ratelimit`).
    """

    __tablename__ = "mail_rate_limits"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    next_free: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Deliverability: a receiver asked to slow down; the budget is lower until then.
    slowed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"MailRateLimit(name={self.name!r}, next_free={self.next_free!r})"


# Operations ------------------------------------------------------


class JobRecovery(Base):
    """How often the stalled-job check re-queued a job whose worker died (operations)."""

    __tablename__ = "job_recoveries"

    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    recoveries: Mapped[int] = mapped_column(server_default=text("0"))
    last_recovered_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    def __repr__(self) -> str:
        return f"JobRecovery(job_id={self.job_id!r}, recoveries={self.recoveries!r})"


# Deliverability ----------------------------------------------------


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"


class Suppression(Base):
    """An address never mailed again (transactional mail only for hard bounces and
    manual entries; see `jobs.feedback.suppressions`)."""

    __tablename__ = "suppressions"

    address: Mapped[str] = mapped_column(Text, primary_key=True)  # normalized, lower case
    reason: Mapped[SuppressionReason] = mapped_column(text_enum(SuppressionReason, "reason", 16))
    source: Mapped[str] = mapped_column(Text)
    first_event_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_event_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    events: Mapped[int] = mapped_column(server_default=text("1"))

    def __repr__(self) -> str:
        return f"Suppression(address={self.address!r}, reason={self.reason!r})"


class FeedbackEvent(Base):
    """One bounce or complaint as received, raw payload kept for audit; de-duplicated
    by (provider, provider event id) and matched to its ledger row when possible."""

    __tablename__ = "feedback_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    provider: Mapped[str] = mapped_column(Text)  # inbound, ses, postmark, webhook
    event_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # hard_bounce, soft_bounce, complaint
    address: Mapped[str] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    email_message_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("email_messages.id", ondelete="SET NULL"), index=True
    )
    raw: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index("ix_feedback_events_address_kind_received_at", "address", "kind", "received_at"),
    )

    def __repr__(self) -> str:
        return f"FeedbackEvent(id={self.id!r}, kind={self.kind!r}, address={self.address!r})"


# Web ---------------------------------------------------------------


class WorkerInfo(Base):
    """Where a running `jobs worker` runs and what it serves, keyed by procrastinate's
    worker id (``procrastinate_workers`` has only an id and a heartbeat)."""

    __tablename__ = "worker_info"

    worker_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int]
    queues: Mapped[list[str]] = mapped_column(ARRAY(Text))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def __repr__(self) -> str:
        return f"WorkerInfo(worker_id={self.worker_id!r}, host={self.host!r}, pid={self.pid!r})"


# Message-IDs --------------------------------------------------------


class Installation(Base):
    """One row: this database's random id, made by its migration (see jobs.db.installation)."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    installation_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    def __repr__(self) -> str:
        return f"Installation(installation_id={self.installation_id!r})"


# Faults ----------------------------------------------------------


class AcceptedEmail(Base):
    """A message the SMTP server accepted whose ledger row may not say ``sent`` yet.

    Written at once by the worker's journal (`jobs.mail.journal`), outside the delivery
    job's transaction: if that transaction is lost (killed worker, database restart), a
    retry finds the acceptance here and records it instead of sending the message again.
    No foreign key: the insert must not wait for the ledger row the job holds locked.
    """

    __tablename__ = "email_accepted"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    message_id: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"AcceptedEmail(id={self.id!r}, message_id={self.message_id!r})"
