"""Registering users: the user row and the welcome email, one transaction.

`register_user` is ONE statement: the user row, its welcome email's ledger row
(`welcome:<user id>`) and that email's delivery job, on the caller's session.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from jobs.db.queue_sql import DEFER_NEW_MESSAGE
from jobs.errors import JobsError
from jobs.mail.address import normalize_address
from jobs.mail.enqueue import columns_of, job_params
from jobs.mail.message import MAX_SUBJECT_LENGTH, check_header
from jobs.mail.templates import ensure_template, search_path
from jobs.models import User
from jobs.settings import get_settings

WELCOME_TEMPLATE = "welcome"
# The welcome subject is "Welcome, <username>!": it must stay within MAX_SUBJECT_LENGTH.
MAX_USERNAME_LENGTH = MAX_SUBJECT_LENGTH - len("Welcome, !")


class InvalidUsername(JobsError, ValueError):
    """An empty username."""


class EmailTaken(JobsError, ValueError):
    """A user with this address (case-insensitively) exists already."""


# A taken address inserts nothing (and so mails nothing) and leaves the caller's
# transaction usable: no unique-violation abort.
INSERT_USER = f"""
    INSERT INTO users (email, username) VALUES (:email, :username)
    ON CONFLICT DO NOTHING
    RETURNING {columns_of(User)}"""

_REGISTER = select(User).from_statement(
    text(
        f"""
        WITH new_user AS ({INSERT_USER}
        ), message AS (
            INSERT INTO email_messages (idempotency_key, kind, user_id, to_address, template,
                                        context)
            SELECT 'welcome:' || id, 'welcome', id, email, '{WELCOME_TEMPLATE}',
                   jsonb_build_object('username', username)
            FROM new_user
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING id
        ), {DEFER_NEW_MESSAGE}
        SELECT {columns_of(User)} FROM new_user LEFT JOIN job ON true
        """
    ).columns(*User.__table__.columns)
)


def _params(email: str, username: str) -> dict[str, Any]:
    """Validate before the database is touched; the statement's parameters."""
    if not isinstance(username, str) or not username.strip():
        raise InvalidUsername("username is empty")
    check_header("username", username.strip())  # it lands in the welcome subject
    if len(username.strip()) > MAX_USERNAME_LENGTH:
        raise InvalidUsername(
            f"username is {len(username.strip())} characters long; the most is "
            f"{MAX_USERNAME_LENGTH} (it is part of the welcome email's subject)"
        )
    ensure_template(WELCOME_TEMPLATE, search_path(get_settings().MAIL_TEMPLATE_DIR))
    return {"email": normalize_address(email), "username": username.strip(), **job_params()}


def _registered(user: User | None, params: dict[str, Any]) -> User:
    if user is None:
        raise EmailTaken(f"a user with email {params['email']!r} already exists")
    return user


def register_user(session: Session, *, email: str, username: str) -> User:
    """Insert the user and enqueue the welcome email; the caller commits."""
    params = _params(email, username)
    return _registered(session.scalars(_REGISTER, params).one_or_none(), params)


async def register_user_async(session: AsyncSession, *, email: str, username: str) -> User:
    """`register_user` for an `AsyncSession`."""
    params = _params(email, username)
    return _registered((await session.scalars(_REGISTER, params)).one_or_none(), params)


def user_by_email(session: Session, email: str, *, lock: bool = False) -> User | None:
    """The user with ``email`` (case-insensitively), if any; ``lock`` takes a row lock."""
    query = select(User).where(func.lower(User.email) == email.strip().lower())
    return session.scalars(query.with_for_update() if lock else query).one_or_none()
