"""The SMTP pool against a real aiosmtpd server: reuse, cap, reconnect, close, TLS rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from jobs.dev.sink import Sink
from jobs.errors import ConfigError
from jobs.mail import smtp as smtp_client
from jobs.mail.config import SmtpConfig
from jobs.mail.message import Outgoing, build_wire
from jobs.mail.pool import SmtpPool, close_pool, get_pool
from jobs.mail.smtp_connection import SmtpError
from tests.conftest import faults


def _message(i: int) -> Outgoing:
    return build_wire(
        sender="noreply@example.com",
        sender_name="jobs",
        to=f"user{i}@example.com",
        subject=f"hello {i}",
        text="text",
        html="<p>html</p>",
        message_id=f"<{i}@example.com>",
    )


async def _send(pool: SmtpPool, i: int) -> None:
    async with pool.connection() as client:
        await smtp_client.send(client, _message(i))


def _config(sink: Sink, **overrides: Any) -> SmtpConfig:
    return SmtpConfig(host=sink.host, port=sink.port, timeout=5, **overrides)


async def test_one_connection_carries_many_messages(smtp: Sink) -> None:
    pool = SmtpPool(_config(smtp), max_size=4)
    for i in range(10):
        await _send(pool, i)
    await pool.close()
    assert len(smtp.messages) == 10
    assert smtp.handler.connections == 1


async def test_concurrent_sends_never_exceed_the_cap(smtp: Sink) -> None:
    pool = SmtpPool(_config(smtp), max_size=3)
    await asyncio.gather(*(_send(pool, i) for i in range(30)))
    await pool.close()
    assert len(smtp.messages) == 30
    assert 1 <= smtp.handler.connections <= 3


async def test_a_connection_the_server_dropped_is_replaced(smtp: Sink) -> None:
    pool = SmtpPool(_config(smtp), max_size=1)
    await _send(pool, 1)
    faults(smtp).drop_all()  # like a server-side idle timeout
    await asyncio.sleep(0.2)
    await _send(pool, 2)  # no error: the dead connection is not reused
    await pool.close()
    assert len(smtp.messages) == 2
    assert smtp.handler.connections == 2


async def test_a_rejected_message_keeps_the_connection(smtp: Sink) -> None:
    faults(smtp).refuse["user1@example.com"] = "550 5.1.1 no such user"
    pool = SmtpPool(_config(smtp), max_size=1)
    with pytest.raises(smtp_client.Rejected, match="550"):
        await _send(pool, 1)
    await _send(pool, 2)
    await pool.close()
    assert smtp.handler.connections == 1


async def test_server_trouble_discards_the_connection_a_deferral_keeps_it(smtp: Sink) -> None:
    faults(smtp).data_replies.extend(["451 4.3.0 try later", "421 4.3.0 closing"])
    pool = SmtpPool(_config(smtp), max_size=1)
    with pytest.raises(smtp_client.Deferred):  # this message, later: the connection is fine
        await _send(pool, 1)
    with pytest.raises(SmtpError):  # the server itself is in trouble
        await _send(pool, 2)
    await _send(pool, 3)
    await pool.close()
    assert smtp.handler.connections == 2


async def test_closing_the_pool_says_quit(smtp: Sink) -> None:
    pool = get_pool(_config(smtp), 2)
    await asyncio.gather(_send(pool, 1), _send(pool, 2))
    assert get_pool(_config(smtp), 2) is pool  # one pool per process and loop
    await close_pool()  # returns once the server answered every QUIT
    assert faults(smtp).quits == smtp.handler.connections >= 1
    with pytest.raises(RuntimeError, match="closed"):
        await _send(pool, 3)


async def test_starttls_required_never_falls_back_to_plain_text(smtp: Sink) -> None:
    pool = SmtpPool(_config(smtp, starttls=True), max_size=1)
    with pytest.raises(SmtpError, match="STARTTLS"):
        await _send(pool, 1)
    assert smtp.messages == []


def test_credentials_over_plain_text_to_a_remote_host_are_refused() -> None:
    with pytest.raises(ConfigError, match="MAIL_STARTTLS"):
        SmtpConfig(host="smtp.example.com", port=25, username="me", password=SecretStr("pw"))
    # encrypted, or loopback (a local relay or sink): allowed
    SmtpConfig(host="smtp.example.com", port=587, username="me", starttls=True)
    SmtpConfig(host="127.0.0.1", port=1025, username="me")
