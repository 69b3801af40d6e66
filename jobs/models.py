"""SQLAlchemy models: the application tables `jobs` owns."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    Text,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
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


class EmailStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(Text)
    username: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

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
        Enum(
            EmailStatus,
            name="status",
            native_enum=False,
            create_constraint=True,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        server_default=EmailStatus.PENDING.value,
    )
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(
            "ix_email_messages_pending",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        # Operations: `jobs status` counts by status over a recent window (index-only), and
        # retention finds the old contexts to drop without revisiting pruned rows.
        Index("ix_email_messages_created_at_status", "created_at", "status"),
        Index(
            "ix_email_messages_context_expiry",
            "created_at",
            postgresql_where=text("context IS NOT NULL"),
        ),
    )

    def __repr__(self) -> str:
        return f"EmailMessage(id={self.id!r}, key={self.idempotency_key!r}, status={self.status!r})"


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
