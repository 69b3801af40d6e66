"""Delivery against a real SMTP peer: structure, escaping, failures, retries."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest
from sqlalchemy import select

from jobs.db import session_factory
from jobs.dev.sink import Sink, free_port
from jobs.mail.delivery import BATCH_SIZE, batch_size
from jobs.mail.enqueue import defer_delivery, enqueue_email
from jobs.mail.ledger import TRANSIENT_EXHAUSTED
from jobs.models import EmailMessage, EmailStatus, User
from jobs.settings import get_settings
from jobs.tasks import BULK_PRIORITY, DELIVER_TASK
from jobs.worker.timeout import set_task_timeout
from tests.conftest import count, drain, faults, queue_chunk


def _chunk(url: str, n: int, *, offset: int = 0) -> list[int]:
    return queue_chunk(url, n, offset=offset)[0]


def _ledger(url: str) -> list[EmailMessage]:
    with session_factory(url)() as session:
        return list(session.scalars(select(EmailMessage).order_by(EmailMessage.id)))


async def test_message_is_multipart_with_the_expected_headers(
    database_url: str, smtp: Sink
) -> None:
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(
            session,
            to="zoe@example.com",
            template="welcome",
            context={"username": "Zoë"},
            subject="Grüße aus Köln",
        )
    await drain()
    [message] = faults(smtp).parsed()
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert message["From"] == "jobs <noreply@example.com>"
    assert message["Subject"] == "Grüße aus Köln"
    raw = smtp.messages[0].decode()
    assert "Subject: =?utf-8?" in raw  # RFC 2047 on the wire
    assert message["Date"] is not None
    assert message["Message-ID"].endswith("@example.com>")


async def test_html_part_is_autoescaped(database_url: str, smtp: Sink) -> None:
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(
            session, to="x@example.com", template="welcome", context={"username": "<script>"}
        )
    await drain()
    [message] = faults(smtp).parsed()
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]  # the part exists
    assert "&lt;script&gt;" in html
    assert "<script>" not in html


async def test_missing_template_variable_fails_that_message_with_its_reason(
    database_url: str, smtp: Sink
) -> None:
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(session, to="x@example.com", template="welcome", context={})
    await drain()
    assert smtp.messages == []
    [row] = _ledger(database_url)
    assert row.status == EmailStatus.FAILED
    assert row.last_error is not None
    assert "'username' is undefined" in row.last_error


async def test_a_5xx_recipient_fails_alone_and_the_chunk_goes_on(
    database_url: str, smtp: Sink
) -> None:
    faults(smtp).refuse["user3@example.com"] = "550 5.1.1 no such user"
    _chunk(database_url, 10)
    await drain()
    rows = _ledger(database_url)
    assert [r.status for r in rows].count(EmailStatus.SENT) == 9
    [failed] = [r for r in rows if r.status == EmailStatus.FAILED]
    assert failed.to_address == "user3@example.com"
    assert failed.last_error is not None
    assert "550" in failed.last_error
    assert len(smtp.messages) == 9


async def test_421_twice_then_accepted_is_sent_exactly_once(database_url: str, smtp: Sink) -> None:
    faults(smtp).data_replies.extend(["421 4.3.0 try later", "421 4.3.0 try later"])
    _chunk(database_url, 1)
    await drain()
    [row] = _ledger(database_url)
    assert row.status == EmailStatus.SENT
    assert row.attempts == 3
    assert len(smtp.messages) == 1


async def test_authentication_required_is_retried_not_a_refusal_of_the_message(
    database_url: str, smtp: Sink
) -> None:
    faults(smtp).mail_replies.extend(["530 5.7.0 Authentication required"] * 2)
    _chunk(database_url, 1)
    await drain()
    [row] = _ledger(database_url)
    assert row.status == EmailStatus.SENT  # not failed for good on the first 530
    assert row.attempts == 3
    assert len(smtp.messages) == 1


async def test_dropped_connection_mid_chunk_sends_every_message_exactly_once(
    database_url: str, smtp: Sink
) -> None:
    faults(smtp).drop_after = 4
    _chunk(database_url, 10)
    await drain()
    assert {r.status for r in _ledger(database_url)} == {EmailStatus.SENT}
    recipients = [m["To"] for m in faults(smtp).parsed()]
    assert sorted(recipients) == sorted(f"user{i}@example.com" for i in range(10))


async def test_message_id_is_stable_across_retries(database_url: str, smtp: Sink) -> None:
    faults(smtp).data_replies.append("451 4.3.0 local error")
    _chunk(database_url, 1)
    await drain()
    [row] = _ledger(database_url)
    [message] = faults(smtp).parsed()
    assert row.message_id == message["Message-ID"]
    from jobs.db import session_factory
    from jobs.db.installation import installation_id
    from jobs.mail.message import message_id_for

    with session_factory(database_url)() as session:
        installation = installation_id(session)
    assert row.message_id == message_id_for("test:0", "noreply@example.com", installation)
    assert [m["Message-ID"] for m in faults(smtp).parsed()] == [row.message_id]


async def test_exhausted_retries_fail_with_the_last_reason(database_url: str, smtp: Sink) -> None:
    faults(smtp).data_replies.extend(["421 4.7.0 server busy"] * 50)
    _chunk(database_url, 2)
    await drain(fast_forward=20)
    rows = _ledger(database_url)
    assert {r.status for r in rows} == {EmailStatus.FAILED}
    assert all("421" in (r.last_error or "") for r in rows)
    assert smtp.messages == []


def _job_attempts(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT attempts FROM procrastinate_jobs ORDER BY id").fetchall()
    return [int(r[0]) for r in rows]


async def test_header_injection_through_the_context_is_refused(
    database_url: str, smtp: Sink
) -> None:
    # The welcome subject embeds the username: CR/LF there must not become headers.
    with session_factory(database_url)() as session, session.begin():
        enqueue_email(
            session,
            to="x@example.com",
            template="welcome",
            context={"username": "eve\r\nBcc: victim@example.com"},
        )
    await drain()
    assert smtp.messages == []
    [row] = _ledger(database_url)
    assert row.status == EmailStatus.FAILED
    assert "control character" in (row.last_error or "")


async def test_an_invalid_address_fails_alone(database_url: str, smtp: Sink) -> None:
    ids = _chunk(database_url, 3)
    with session_factory(database_url)() as session, session.begin():
        session.get_one(EmailMessage, ids[1]).to_address = "not an address"
    await drain()
    rows = _ledger(database_url)
    assert [r.status for r in rows] == [EmailStatus.SENT, EmailStatus.FAILED, EmailStatus.SENT]
    assert "not an address" in (rows[1].last_error or "")
    assert len(smtp.messages) == 2


async def test_inactive_users_are_suppressed_not_sent(database_url: str, smtp: Sink) -> None:
    with session_factory(database_url)() as session, session.begin():
        users = [User(email=f"u{i}@example.com", username=f"u{i}") for i in range(4)]
        session.add_all(users)
        session.flush()
        rows = [
            EmailMessage(
                idempotency_key=f"promo:{u.id}",
                kind="promo",
                user_id=u.id,
                to_address=u.email,
                template="welcome",
                context={"username": u.username},
            )
            for u in users
        ]
        session.add_all(rows)
        session.flush()
        defer_delivery(session, [r.id for r in rows], priority=BULK_PRIORITY)
    with session_factory(database_url)() as session, session.begin():
        session.get_one(User, users[1].id).is_active = False  # deactivated before sending
    await drain()
    ledger = _ledger(database_url)
    assert [r.status for r in ledger] == [
        EmailStatus.SENT,
        EmailStatus.SUPPRESSED,
        EmailStatus.SENT,
        EmailStatus.SENT,
    ]
    assert ledger[1].attempts == 0
    assert sorted(m["To"] for m in faults(smtp).parsed()) == [
        "u0@example.com",
        "u2@example.com",
        "u3@example.com",
    ]
    assert ledger[1].last_error == "suppressed: the user is inactive"


async def test_a_promotion_to_a_user_who_unsubscribed_since_is_suppressed(
    database_url: str, smtp: Sink
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (email, username) VALUES ('a@example.com', 'a'),"
            " ('b@example.com', 'b');"
            "INSERT INTO promotion_runs (campaign_id, period)"
            " SELECT id, now() FROM campaigns WHERE name = 'default'"
        )
    with session_factory(database_url)() as session, session.begin():
        rows = [
            EmailMessage(
                idempotency_key=f"{kind}:{user_id}",
                kind=kind,
                user_id=user_id,
                to_address="b@example.com",
                template="welcome",
                context={"username": "b"},
                promotion_run_id=run_id,
            )
            for kind, user_id, run_id in (("promotion", 2, 1), ("welcome", 2, None))
        ]
        session.add_all(rows)
        session.flush()
        defer_delivery(session, [r.id for r in rows], priority=BULK_PRIORITY)
    with psycopg.connect(database_url, autocommit=True) as conn:  # after the fan-out
        conn.execute("UPDATE users SET unsubscribed_at = now() WHERE id = 2")
    await drain()
    promotion, welcome = _ledger(database_url)
    assert (promotion.status, promotion.last_error) == (
        EmailStatus.SUPPRESSED,
        "suppressed: the user unsubscribed from promotions",
    )
    assert welcome.status == EmailStatus.SENT  # transactional mail still goes
    assert len(smtp.messages) == 1


async def test_connections_are_reused_across_messages_and_jobs(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_MAX_CONNECTIONS", "2")
    get_settings.cache_clear()
    for _ in range(8):
        _chunk(database_url, 10, offset=len(_ledger(database_url)))
    await drain(concurrency=4)
    assert {r.status for r in _ledger(database_url)} == {EmailStatus.SENT}
    assert len(smtp.messages) == 80
    assert 1 <= smtp.handler.connections <= 2


async def test_a_chunk_larger_than_a_batch_is_sent_once(database_url: str, smtp: Sink) -> None:
    faults(smtp).drop_after = 2 * BATCH_SIZE + 5  # in the third batch
    _chunk(database_url, 3 * BATCH_SIZE + 7)
    await drain()
    rows = _ledger(database_url)
    assert {r.status for r in rows} == {EmailStatus.SENT}
    recipients = [m["To"] for m in faults(smtp).parsed()]
    assert sorted(recipients) == sorted(r.to_address for r in rows)
    assert max(r.attempts for r in rows) == 2  # the rows of the interrupted batch


async def test_a_hung_server_times_the_job_out_and_the_retry_sends_once(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    faults(smtp).stall_mail.append(30)  # the first MAIL command hangs
    _chunk(database_url, 1)
    await drain()
    [row] = _ledger(database_url)
    assert row.status == EmailStatus.SENT
    assert row.attempts == 2
    assert len(smtp.messages) == 1
    assert _job_attempts(database_url) == [2]  # two runs: timed out, then sent


async def test_a_task_timeout_override_applies_and_exhaustion_fails_with_the_reason(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("MAIL_MAX_CONNECTIONS", "1")  # the other two wait behind the hung one
    get_settings.cache_clear()
    set_task_timeout(DELIVER_TASK, 0.5)
    try:
        faults(smtp).stall_mail.append(30)
        _chunk(database_url, 3)
        await drain()
    finally:
        set_task_timeout(DELIVER_TASK, None)
    rows = _ledger(database_url)
    assert {r.status for r in rows} == {EmailStatus.FAILED}
    assert all("timed out after 0.5 s" in (r.last_error or "") for r in rows)
    assert [r.attempts for r in rows] == [1, 0, 0]  # only the first was tried
    assert smtp.messages == []


def test_a_crashed_worker_leaves_at_most_one_batch_unrecorded(
    database_url: str, smtp: Sink
) -> None:
    """SIGKILL mid-chunk: everything the sink got, except one batch in flight, is `sent`."""
    rate = 40  # slow enough to kill the worker mid-chunk; one batch = 40 messages
    _chunk(database_url, 200)
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "worker", "--queues", "email"],
        env={**os.environ, "MAIL_RATE_LIMIT": str(rate)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(smtp.messages) < 100:
            assert time.monotonic() < deadline, "the worker sent too little"
            time.sleep(0.02)
    finally:
        worker.kill()
        worker.wait(timeout=30)
    time.sleep(0.3)  # let the sink finish what was on the wire
    received = len(smtp.messages)
    recorded = count(database_url, "SELECT count(*) FROM email_messages WHERE status = 'sent'")
    assert recorded <= received < 200
    assert received - recorded <= batch_size(rate)


async def test_an_unreachable_server_is_retried_then_fails_with_its_address(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("MAIL_SERVER", "127.0.0.1")
    monkeypatch.setenv("MAIL_PORT", str(port))
    monkeypatch.setenv("MAIL_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    _chunk(database_url, 2)
    await drain()
    rows = _ledger(database_url)
    assert {r.status for r in rows} == {EmailStatus.FAILED}
    for row in rows:
        assert row.last_error is not None
        assert row.last_error.startswith(TRANSIENT_EXHAUSTED)
        assert f"127.0.0.1:{port}" in row.last_error
        assert 1 <= row.attempts <= 3
    assert _job_attempts(database_url) == [3]


async def test_a_4xx_for_one_recipient_defers_it_alone_and_the_chunk_goes_on(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAIL_MAX_ATTEMPTS", "3")
    faults(smtp).refuse["user3@example.com"] = "450 4.2.0 greylisted, try again later"
    _chunk(database_url, 10)
    await drain(fast_forward=0)  # the first run only
    rows = _ledger(database_url)
    assert [r.status for r in rows].count(EmailStatus.SENT) == 9
    assert len(smtp.messages) == 9
    greylisted = rows[3]
    assert (greylisted.status, greylisted.attempts) == (EmailStatus.PENDING, 1)
    assert greylisted.last_error is not None
    assert "450" in greylisted.last_error
    await drain(fast_forward=10)  # the retries: still greylisted every time
    greylisted = _ledger(database_url)[3]
    assert (greylisted.status, greylisted.attempts) == (EmailStatus.FAILED, 3)
    assert greylisted.last_error is not None
    assert greylisted.last_error.startswith(TRANSIENT_EXHAUSTED)
    assert len(smtp.messages) == 9  # nothing was sent twice
