"""What senders need: Message-IDs unique per database, callers' keys apart from jobs' own,
later delivery, Reply-To and extra headers, SMTPUTF8, and refusals before anything is written."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text

from jobs.accounts import InvalidUsername, register_user
from jobs.app import app
from jobs.db import session_factory, with_database
from jobs.db.migrations import migrate
from jobs.dev.sink import Sink
from jobs.errors import HeaderInjection, InvalidSchedule, SubjectTooLong
from jobs.mail.enqueue import defer_delivery, enqueue_email
from jobs.mail.message import MAX_SUBJECT_LENGTH
from jobs.models import EmailStatus, FailureKind
from jobs.settings import get_settings
from tests.conftest import RUN_ID, _admin, _no_periodic_deferrer, count, drain, faults
from tests.smtp import FaultyHandler

LEDGER = "SELECT status FROM email_messages"


def _send(url: str, key: str, **options: object) -> None:
    with session_factory(url)() as session, session.begin():
        enqueue_email(
            session,
            to="ann@example.com",
            template="welcome",
            context={"username": "Ann"},
            idempotency_key=key,
            **options,  # type: ignore[arg-type]  # keyword options of enqueue_email
        )


def _status(url: str) -> list[tuple[str, str | None, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT status, failure_kind, last_error FROM email_messages ORDER BY id"
        ).fetchall()
    return [(str(s), k, e) for s, k, e in rows]


async def test_two_databases_give_one_key_different_message_ids_and_retries_keep_theirs(
    server_url: str, database_url: str, smtp: Sink, env: object
) -> None:
    other = f"jobs_other_{RUN_ID}_{int(time.time() * 1000) % 10**8}"
    _admin(server_url, f'CREATE DATABASE "{other}"')
    other_url = with_database(server_url, other)
    try:
        migrate(other_url)  # a database of its own: its own installation id
        faults(smtp).data_replies.append("451 4.3.0 try again")  # the first attempt fails
        for url in (database_url, other_url):
            get_settings.cache_clear()
            _send(url, "order:7")
            env(DATABASE_URL=url)  # type: ignore[operator]  # the env fixture
            await drain()
        first, second = (m["Message-ID"] for m in faults(smtp).parsed())
        assert first != second
        assert first.endswith("@example.com>")
        assert second.endswith("@example.com>")
        # A resend of the same email (its `sent` mark lost in a crash, say) keeps its ID,
        # as did its first attempt's retry (a 451 first): the receiver can drop the copy.
        with session_factory(database_url)() as session, session.begin():
            session.execute(text("UPDATE email_messages SET status = 'pending'"))
            [row_id] = session.execute(text("SELECT id FROM email_messages")).scalars()
            defer_delivery(session, [row_id])
        env(DATABASE_URL=database_url)  # type: ignore[operator]  # the env fixture
        await drain()
        ids = [m["Message-ID"] for m in faults(smtp).parsed()]
        assert ids == [first, second, first]
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT message_id, attempts FROM email_messages").fetchone()
        assert row == (first, 3)
    finally:
        from jobs.db import dispose_engines

        await dispose_engines()
        _admin(server_url, f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


async def test_a_callers_welcome_key_does_not_stop_the_real_welcome(
    database_url: str, smtp: Sink
) -> None:
    sessions = session_factory(database_url)
    with sessions() as session, session.begin():
        user_id = session.execute(text("SELECT nextval('users_id_seq')")).scalar_one() + 1
        mine = enqueue_email(
            session,
            to="ops@example.com",
            template="welcome",
            context={"username": "ops"},
            idempotency_key=f"welcome:{user_id}",
        )
        user = register_user(session, email="ann@example.com", username="Ann")
    assert user.id == user_id
    assert mine.idempotency_key == f"user:welcome:{user_id}"
    await drain()
    assert sorted(m["To"] for m in faults(smtp).parsed()) == ["ann@example.com", "ops@example.com"]


async def _work_once() -> None:
    """One worker run over the due jobs; no time travel (unlike `drain`)."""
    async with app.open_async():
        with _no_periodic_deferrer():
            await app.run_worker_async(
                wait=False, concurrency=2, install_signal_handlers=False, listen_notify=False
            )


async def test_send_at_is_never_early_and_then_sent(database_url: str, smtp: Sink) -> None:
    send_at = datetime.now(UTC) + timedelta(seconds=2)
    _send(database_url, "later", send_at=send_at)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT j.scheduled_at, m.not_before FROM procrastinate_jobs j, email_messages m"
        ).fetchone()
    assert row == (send_at, send_at)
    deadline = time.monotonic() + 20
    while not smtp.messages:
        assert time.monotonic() < deadline, "the delayed email was never sent"
        await _work_once()
        if datetime.now(UTC) < send_at - timedelta(milliseconds=50):
            assert not smtp.messages, "sent before send_at"
        await asyncio.sleep(0.2)
    assert _status(database_url) == [("sent", None, None)]


async def test_a_job_that_runs_early_leaves_the_row_to_a_job_at_its_time(
    database_url: str, smtp: Sink
) -> None:
    _send(database_url, "later", delay=timedelta(hours=1))
    with psycopg.connect(database_url, autocommit=True) as conn:  # e.g. a re-queue, by hand
        conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now()")
    await _work_once()
    assert not smtp.messages
    assert _status(database_url) == [("pending", None, None)]
    later = count(
        database_url,
        "SELECT count(*) FROM procrastinate_jobs j, email_messages m"
        " WHERE j.status = 'todo' AND j.scheduled_at = m.not_before",
    )
    assert later == 1


async def test_reply_to_and_extra_headers_reach_the_message(
    database_url: str, smtp: Sink, env: object
) -> None:
    env(MAIL_REPLY_TO="help@example.com")  # type: ignore[operator]  # the env fixture
    _send(database_url, "a", reply_to="ann.support@example.com", headers={"X-Order": "42"})
    _send(database_url, "b")
    await drain()
    by_key = {m["X-Order"]: m for m in faults(smtp).parsed()}
    assert by_key["42"]["Reply-To"] == "ann.support@example.com"
    assert by_key[None]["Reply-To"] == "help@example.com"  # MAIL_REPLY_TO, the default


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"headers": {"X-Note": "a\r\nBcc: x@example.com"}}, HeaderInjection, "control"),
        ({"headers": {"From": "boss@example.com"}}, HeaderInjection, "set by jobs"),
        ({"headers": {"list-unsubscribe": "<x>"}}, HeaderInjection, "set by jobs"),
        ({"headers": {"Bad Name": "x"}}, HeaderInjection, "invalid header name"),
        ({"reply_to": "not an address"}, ValueError, "invalid email address"),
        ({"send_at": datetime(2030, 1, 1)}, InvalidSchedule, "timezone-aware"),
        ({"delay": timedelta(seconds=-1)}, InvalidSchedule, "zero or more"),
        (
            {"send_at": datetime.now(UTC), "delay": timedelta(1)},
            InvalidSchedule,
            "not both",
        ),
        ({"subject": "x" * (MAX_SUBJECT_LENGTH + 1)}, SubjectTooLong, str(MAX_SUBJECT_LENGTH)),
    ],
)
def test_what_can_never_be_sent_is_refused_before_anything_is_written(
    database_url: str, options: dict[str, object], error: type[Exception], words: str
) -> None:
    with session_factory(database_url)() as session, session.begin():
        with pytest.raises(error, match=words):
            enqueue_email(
                session,
                to="ann@example.com",
                template="welcome",
                context={"username": "Ann"},
                **options,  # type: ignore[arg-type]  # keyword options of enqueue_email
            )
        assert issubclass(error, ValueError)
        session.execute(text("SELECT 1"))  # the caller's transaction is still usable
    assert count(database_url, "SELECT count(*) FROM email_messages") == 0


def test_a_username_too_long_for_the_welcome_subject_is_refused(database_url: str) -> None:
    with (
        session_factory(database_url)() as session,
        session.begin(),
        pytest.raises(InvalidUsername, match="welcome email's subject"),
    ):
        register_user(session, email="a@example.com", username="n" * MAX_SUBJECT_LENGTH)
    assert count(database_url, "SELECT count(*) FROM users") == 0


async def test_a_non_ascii_address_needs_an_smtputf8_server(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for smtputf8 in (False, True):
        with Sink(FaultyHandler(), smtputf8=smtputf8) as sink:
            monkeypatch.setenv("MAIL_SERVER", sink.host)
            monkeypatch.setenv("MAIL_PORT", str(sink.port))
            get_settings.cache_clear()
            with session_factory(database_url)() as session, session.begin():
                enqueue_email(
                    session, to="ñandú@example.com", template="welcome", context={"username": "ñ"}
                )
            await drain()
            received = list(sink.messages)
    refused, sent = _status(database_url)
    assert refused[:2] == ("failed", FailureKind.REJECTED.value)
    assert "does not support SMTPUTF8" in str(refused[2])
    assert "ñandú@example.com" in str(refused[2])
    assert sent == ("sent", None, None)
    [raw] = received
    assert "To: ñandú@example.com\r\n".encode() in raw  # UTF-8 (RFC 6532), not an encoded-word
    assert EmailStatus.SENT.value == sent[0]


async def test_the_async_api_takes_the_same_options(database_url: str) -> None:
    from jobs.db import async_session_factory
    from jobs.mail.enqueue import enqueue_email_async

    async with async_session_factory(database_url)() as session, session.begin():
        message = await enqueue_email_async(
            session,
            to="ann@example.com",
            template="welcome",
            context={"username": "Ann"},
            idempotency_key="k",
            delay=timedelta(hours=1),
            reply_to="help@example.com",
            headers={"X-Order": "42"},
        )
    assert message.idempotency_key == "user:k"
    assert message.headers == {"X-Order": "42", "Reply-To": "help@example.com"}
    assert message.not_before is not None
    assert message.not_before > datetime.now(UTC) + timedelta(minutes=59)
    due = "SELECT count(*) FROM procrastinate_jobs WHERE scheduled_at > now() + interval '59 min'"
    assert count(database_url, due) == 1


def test_the_upgrade_moves_existing_caller_keys_and_makes_an_installation_id(
    database_url: str,
) -> None:
    from alembic import command

    from jobs.db.migrations import alembic_config

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    command.upgrade(alembic_config(database_url), "0007")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, email, username) OVERRIDING SYSTEM VALUE"
            " VALUES (42, 'ann@example.com', 'ann')"
        )
        conn.execute(
            "INSERT INTO promotion_runs (id, campaign_id, period) OVERRIDING SYSTEM VALUE"
            " VALUES (3, 1, now())"
        )
        rows = [
            ("welcome:42", 42, None),  # register_user's own
            ("welcome:7", None, None),  # an application's key that looks like one
            ("signup:1", None, None),
            ("promotion:3:42", 42, 3),
            ("email:4c0ffee0-0000-4000-8000-000000000000", None, None),
        ]
        for key, user_id, run_id in rows:
            conn.execute(
                "INSERT INTO email_messages (idempotency_key, kind, user_id, to_address, template,"
                " promotion_run_id) VALUES (%s, 't', %s, 'a@example.com', 'welcome', %s)",
                (key, user_id, run_id),
            )
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        keys = [
            k for (k,) in conn.execute("SELECT idempotency_key FROM email_messages ORDER BY id")
        ]
        installation = conn.execute("SELECT installation_id FROM installation").fetchall()
    assert keys == [
        "welcome:42",
        "user:welcome:7",
        "user:signup:1",
        "promotion:3:42",
        "email:4c0ffee0-0000-4000-8000-000000000000",
    ]
    [(installation_id,)] = installation
    assert len(installation_id) == 32
