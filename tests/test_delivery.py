"""Delivery against a real SMTP peer: structure, escaping, failures, retries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from jobs.db import session_factory
from jobs.email import BULK_PRIORITY, defer_delivery, enqueue_email
from jobs.models import EmailMessage, EmailStatus
from jobs.sink import Sink
from tests.conftest import drain, faults


def _chunk(url: str, n: int, **overrides: Any) -> list[int]:
    """``n`` ledger rows and ONE delivery job for all of them."""
    with session_factory(url)() as session, session.begin():
        rows = [
            EmailMessage(
                idempotency_key=f"test:{i}",
                kind="test",
                to_address=f"user{i}@example.com",
                template="welcome",
                context={"username": f"user{i}"},
                **overrides,
            )
            for i in range(n)
        ]
        session.add_all(rows)
        session.flush()
        defer_delivery(session, [row.id for row in rows], priority=BULK_PRIORITY)
        return [row.id for row in rows]


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
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
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
    from jobs.mail.message import message_id_for

    assert row.message_id == message_id_for("test:0", "noreply@example.com")


async def test_exhausted_retries_fail_with_the_last_reason(database_url: str, smtp: Sink) -> None:
    faults(smtp).data_replies.extend(["421 4.7.0 server busy"] * 50)
    _chunk(database_url, 2)
    await drain(fast_forward=20)
    rows = _ledger(database_url)
    assert {r.status for r in rows} == {EmailStatus.FAILED}
    assert all("421" in (r.last_error or "") for r in rows)
    assert smtp.messages == []
