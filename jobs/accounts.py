"""Registering users: the user row and the welcome email, one transaction."""

from __future__ import annotations

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


# A taken address inserts nothing and leaves the caller's transaction usable
# (no unique-violation abort). Built once: statement construction is not free.
_INSERT_USER = insert(User).on_conflict_do_nothing().returning(User)


def _user_params(email: str, username: str) -> dict[str, str]:
    """Validate before the database is touched; the INSERT's parameters."""
    if not isinstance(username, str) or not username.strip():
        raise InvalidUsername("username is empty")
    return {"email": normalize_address(email), "username": username.strip()}


def _welcome(user: User | None, address: str) -> User:
    if user is None:
        raise EmailTaken(f"a user with email {address!r} already exists")
    return user


def register_user(session: Session, *, email: str, username: str) -> User:
    """Insert the user and enqueue the welcome email; the caller commits."""
    params = _user_params(email, username)
    user = _welcome(session.scalars(_INSERT_USER, [params]).one_or_none(), params["email"])
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
    params = _user_params(email, username)
    inserted = await session.scalars(_INSERT_USER, [params])
    user = _welcome(inserted.one_or_none(), params["email"])
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
