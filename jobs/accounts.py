"""Registering users: the user row and the welcome email, one transaction."""

from __future__ import annotations

from sqlalchemy import Insert
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from jobs.address import normalize_address
from jobs.email import enqueue_email, enqueue_email_async
from jobs.errors import JobsError
from jobs.models import User

WELCOME_TEMPLATE = "welcome"


class InvalidUsername(JobsError, ValueError):
    """An empty username."""


class EmailTaken(JobsError, ValueError):
    """A user with this address (case-insensitively) exists already."""


def _user_insert(email: str, username: str) -> tuple[Insert, str]:
    """Validate, then build the INSERT. A taken address inserts nothing and
    leaves the caller's transaction usable (no unique-violation abort)."""
    if not isinstance(username, str) or not username.strip():
        raise InvalidUsername("username is empty")
    address = normalize_address(email)
    statement = (
        insert(User)
        .values(email=address, username=username.strip())
        .on_conflict_do_nothing()
        .returning(User)
    )
    return statement, address


def _welcome(user: User | None, address: str) -> User:
    if user is None:
        raise EmailTaken(f"a user with email {address!r} already exists")
    return user


def register_user(session: Session, *, email: str, username: str) -> User:
    """Insert the user and enqueue the welcome email; the caller commits."""
    statement, address = _user_insert(email, username)
    user = _welcome(session.scalars(statement).one_or_none(), address)
    enqueue_email(
        session,
        to=user.email,
        template=WELCOME_TEMPLATE,
        context={"username": user.username},
        idempotency_key=f"welcome:{user.id}",
        kind="welcome",
        user_id=user.id,
    )
    return user


async def register_user_async(session: AsyncSession, *, email: str, username: str) -> User:
    """`register_user` for an `AsyncSession`."""
    statement, address = _user_insert(email, username)
    user = _welcome((await session.scalars(statement)).one_or_none(), address)
    await enqueue_email_async(
        session,
        to=user.email,
        template=WELCOME_TEMPLATE,
        context={"username": user.username},
        idempotency_key=f"welcome:{user.id}",
        kind="welcome",
        user_id=user.id,
    )
    return user
