"""register_user: the user and the welcome email commit or vanish together."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from jobs.accounts import EmailTaken, InvalidUsername, register_user, register_user_async
from jobs.db import async_session_factory, session_factory
from jobs.dev.sink import Sink
from jobs.errors import InvalidEmailAddress
from jobs.models import EmailMessage, EmailStatus, User
from tests.conftest import count, drain, faults

ALL = (
    "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM email_messages)"
    " + (SELECT count(*) FROM procrastinate_jobs)"
)


def test_rollback_leaves_no_user_no_ledger_row_no_job(database_url: str) -> None:
    with session_factory(database_url)() as session:
        register_user(session, email="ann@example.com", username="ann")
        session.rollback()
    assert count(database_url, ALL) == 0


def test_exception_in_the_callers_transaction_rolls_everything_back(database_url: str) -> None:
    def signup_then_fail() -> None:
        with session_factory(database_url)() as session, session.begin():
            register_user(session, email="ann@example.com", username="ann")
            raise RuntimeError("the application failed after registering")

    with pytest.raises(RuntimeError):
        signup_then_fail()
    assert count(database_url, ALL) == 0


async def test_commit_then_worker_delivers_exactly_one_email_naming_the_user(
    database_url: str, smtp: Sink
) -> None:
    with session_factory(database_url)() as session, session.begin():
        user = register_user(session, email="ann@example.com", username="Ann Lee")
    assert count(database_url, "SELECT count(*) FROM users") == 1
    assert count(database_url, "SELECT count(*) FROM procrastinate_jobs") == 1
    await drain()
    [received] = faults(smtp).parsed()
    assert received["To"] == "ann@example.com"
    assert received["Subject"] == "Welcome, Ann Lee!"
    assert "Ann Lee" in received.get_body(("plain",)).get_content()  # type: ignore[union-attr]  # the part exists
    assert "Ann Lee" in received.get_body(("html",)).get_content()  # type: ignore[union-attr]  # the part exists
    with session_factory(database_url)() as session:
        message = session.scalars(select(EmailMessage)).one()
    assert message.idempotency_key == f"welcome:{user.id}"
    assert message.status == EmailStatus.SENT


async def test_async_register_user(database_url: str, smtp: Sink) -> None:
    async with async_session_factory(database_url)() as session, session.begin():
        user = await register_user_async(session, email="bo@example.com", username="bo")
    await drain()
    assert len(smtp.messages) == 1
    async with async_session_factory(database_url)() as session:
        stored = await session.get(User, user.id)
    assert stored is not None
    assert stored.is_active


def test_taken_email_is_refused_case_insensitively_and_the_transaction_survives(
    database_url: str,
) -> None:
    sessions = session_factory(database_url)
    with sessions() as session, session.begin():
        register_user(session, email="ann@example.com", username="ann")
    with sessions() as session, session.begin():
        with pytest.raises(EmailTaken, match=r"(?i)ann@example\.com"):
            register_user(session, email="ANN@example.com", username="other")
        register_user(session, email="cy@example.com", username="cy")  # still usable
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 2
        assert session.scalar(select(func.count()).select_from(EmailMessage)) == 2


@pytest.mark.parametrize(
    ("email", "username", "error"),
    [
        ("nope", "x", InvalidEmailAddress),
        ("a@example.com", "  ", InvalidUsername),
    ],
)
def test_bad_input_writes_nothing(
    database_url: str, email: str, username: str, error: type[Exception]
) -> None:
    with session_factory(database_url)() as session, session.begin(), pytest.raises(error):
        register_user(session, email=email, username=username)
    assert count(database_url, ALL) == 0


def test_users_can_be_inserted_with_plain_sql(database_url: str) -> None:
    """Every column but email and username has a server default."""
    with session_factory(database_url)() as session, session.begin():
        users = User.metadata.tables[User.__tablename__]  # a Table; `__table__` is typed FromClause
        session.execute(users.insert().values(email="p@example.com", username="p"))
        user = session.scalars(select(User)).one()
    assert user.id is not None
    assert user.is_active is True
    assert user.created_at is not None
