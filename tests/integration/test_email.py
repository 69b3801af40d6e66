"""The enqueue API: ledger row + job in the caller's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from jobs.app import app
from jobs.db import async_session_factory, session_factory
from jobs.dev.sink import Sink
from jobs.errors import HeaderInjection, InvalidContext, InvalidEmailAddress, UnknownTemplate
from jobs.mail.enqueue import enqueue_email, enqueue_email_async
from jobs.models import EmailMessage, EmailStatus
from tests.conftest import count, drain, faults

JOBS = "SELECT count(*) FROM procrastinate_jobs"
LEDGER = "SELECT count(*) FROM email_messages"


def test_rollback_leaves_no_row_and_no_job(database_url: str) -> None:
    with session_factory(database_url)() as session:
        enqueue_email(session, to="a@example.com", template="welcome", context={"username": "a"})
        session.rollback()
    assert count(database_url, LEDGER) == 0
    assert count(database_url, JOBS) == 0


def test_commit_writes_row_and_delivery_job(database_url: str) -> None:
    with session_factory(database_url)() as session, session.begin():
        message = enqueue_email(
            session, to="A@Example.com", template="welcome", context={"username": "a"}
        )
    assert message.status == EmailStatus.PENDING
    assert message.to_address == "A@example.com"  # domain normalized, local part kept
    assert count(database_url, JOBS + " WHERE task_name = 'email.deliver'") == 1
    assert count(database_url, JOBS + " WHERE queue_name = 'email'") == 1


def test_repeated_idempotency_key_returns_existing_and_defers_nothing(database_url: str) -> None:
    sessions = session_factory(database_url)
    with sessions() as session, session.begin():
        first = enqueue_email(
            session,
            to="a@example.com",
            template="welcome",
            context={"username": "a"},
            idempotency_key="signup:1",
        )
    with sessions() as session, session.begin():
        again = enqueue_email(
            session,
            to="a@example.com",
            template="welcome",
            context={"username": "a"},
            idempotency_key="signup:1",
        )
    assert again.id == first.id
    assert count(database_url, LEDGER) == 1
    assert count(database_url, JOBS) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"to": "not-an-address"}, InvalidEmailAddress),
        ({"to": ""}, InvalidEmailAddress),
        ({"template": "no_such_template"}, UnknownTemplate),
        ({"template": "../../etc/passwd"}, UnknownTemplate),
        ({"subject": "Hi\r\nBcc: victim@example.com"}, HeaderInjection),
        ({"context": {"when": object()}}, InvalidContext),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    database_url: str, kwargs: dict[str, object], error: type[Exception]
) -> None:
    arguments: dict[str, object] = {
        "to": "a@example.com",
        "template": "welcome",
        "context": {"username": "a"},
        **kwargs,
    }
    with session_factory(database_url)() as session, session.begin():
        with pytest.raises(error) as raised:
            enqueue_email(session, **arguments)  # type: ignore[arg-type]  # wrong on purpose
        assert isinstance(raised.value, ValueError)
    assert count(database_url, LEDGER) == 0
    assert count(database_url, JOBS) == 0


async def test_async_enqueue_then_worker_delivers_once(database_url: str, smtp: Sink) -> None:
    async with async_session_factory(database_url)() as session, session.begin():
        message = await enqueue_email_async(
            session, to="zoe@example.com", template="welcome", context={"username": "Zoe"}
        )
    await drain()
    [received] = faults(smtp).parsed()
    assert received["To"] == "zoe@example.com"
    assert "Hello Zoe" in received.get_body(("plain",)).get_content()  # type: ignore[union-attr]  # the part exists
    async with async_session_factory(database_url)() as session:
        row = await session.get(EmailMessage, message.id)
    assert row is not None
    assert row.status == EmailStatus.SENT
    assert row.message_id == received["Message-ID"]
    assert row.sent_at is not None
    await drain()  # nothing left to do: a sent message is never sent again
    assert len(smtp.messages) == 1


async def test_sync_and_async_paths_while_the_app_is_open(database_url: str) -> None:
    """The sync path must not use the open async connector (a known pitfall)."""
    async with app.open_async():
        with session_factory(database_url)() as session, session.begin():
            enqueue_email(
                session, to="s@example.com", template="welcome", context={"username": "s"}
            )
        async with async_session_factory(database_url)() as async_session, async_session.begin():
            await enqueue_email_async(
                async_session, to="t@example.com", template="welcome", context={"username": "t"}
            )
    assert count(database_url, LEDGER) == 2
    assert count(database_url, JOBS) == 2


async def test_async_rollback_leaves_nothing(database_url: str) -> None:
    async with async_session_factory(database_url)() as session:
        await enqueue_email_async(
            session, to="a@example.com", template="welcome", context={"username": "a"}
        )
        await session.rollback()
    assert count(database_url, LEDGER) == 0
    assert count(database_url, JOBS) == 0


def test_enqueued_rows_are_visible_in_the_callers_transaction(database_url: str) -> None:
    with session_factory(database_url)() as session, session.begin():
        message = enqueue_email(
            session, to="a@example.com", template="welcome", context={"username": "a"}
        )
        seen = session.scalars(select(EmailMessage.idempotency_key)).all()
        assert seen == [message.idempotency_key]
        # ...but not outside it until commit.
        assert count(database_url, LEDGER) == 0
