"""The SMTP client against real peers: pipelining or not, refusals, STARTTLS, TLS, AUTH.

Two kinds of peer: aiosmtpd (the sink, with TLS and AUTH turned on here) and a
scripted server on asyncio streams that checks the order of what the client
writes, which aiosmtpd cannot show.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from jobs.dev.sink import Sink
from jobs.mail import smtp
from jobs.mail.config import SmtpConfig
from jobs.mail.message import Outgoing, build_wire
from jobs.mail.smtp_connection import ReplyError, SmtpConnection, SmtpError
from tests.smtp import FaultyHandler

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _message(to: str = "user@example.com") -> Outgoing:
    return build_wire(
        sender="noreply@example.com",
        sender_name="jobs",
        to=to,
        subject="hello",
        text="a line\n.a line that starts with a dot\n.\n",
        html="<p>html</p>",
        message_id="<1@example.com>",
    )


async def _connected(config: SmtpConfig) -> SmtpConnection:
    connection = smtp.client(config)
    await connection.connect()
    return connection


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[SmtpConfig]]]:
    """Serve ``script`` on a loopback port (after the greeting and EHLO); its config."""
    servers: list[asyncio.Server] = []

    async def serve(
        script: Script, *, pipelining: bool = True, starttls: bool = False
    ) -> SmtpConfig:
        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 scripted ESMTP\r\n")
            assert (await reader.readline()).startswith(b"EHLO ")
            offer = b"250-PIPELINING\r\n" if pipelining else b""
            offer += b"250-STARTTLS\r\n" if starttls else b""
            writer.write(b"250-scripted\r\n" + offer + b"250 8BITMIME\r\n")
            try:
                await script(reader, writer)
            finally:
                writer.close()
                await writer.wait_closed()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return SmtpConfig(host="127.0.0.1", port=port, timeout=5, starttls=starttls)

    yield serve
    for server in servers:
        server.close()


async def _data(reader: asyncio.StreamReader) -> bytes:
    """A message's content up to its lone dot, as sent (still dot-stuffed)."""
    lines = []
    while (line := await reader.readline()) != b".\r\n":
        assert line, "the client closed before the end of the message"
        lines.append(line)
    return b"".join(lines)


async def test_a_pipelining_server_gets_the_envelope_in_one_go(scripted: Any) -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Nothing is answered before MAIL, RCPT and DATA have all arrived: a client
        # that waits for each reply would wait here until its timeout.
        seen.extend([await reader.readline() for _ in range(3)])
        writer.write(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n")
        seen.append(await _data(reader))
        writer.write(b"250 2.0.0 queued as 1\r\n")
        assert await reader.readline() == b"QUIT\r\n"
        writer.write(b"221 bye\r\n")

    connection = await _connected(await scripted(script))
    assert await smtp.send(connection, _message()) == "2.0.0 queued as 1"
    await connection.quit()
    assert seen[:3] == [
        b"MAIL FROM:<noreply@example.com>\r\n",
        b"RCPT TO:<user@example.com>\r\n",
        b"DATA\r\n",
    ]
    assert b"\r\n..a line that starts with a dot\r\n..\r\n" in seen[3]  # dot-stuffed


async def test_a_server_without_pipelining_gets_one_command_per_reply(scripted: Any) -> None:
    early: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for command, reply in ((b"MAIL", b"250 ok"), (b"RCPT", b"250 ok"), (b"DATA", b"354 go")):
            assert (await reader.readline()).startswith(command)
            with contextlib.suppress(TimeoutError):  # a pipelining client sent it already
                early.append(await asyncio.wait_for(reader.readline(), 0.2))
            writer.write(reply + b"\r\n")
        await _data(reader)
        writer.write(b"250 queued\r\n")

    connection = await _connected(await scripted(script, pipelining=False))
    assert await smtp.send(connection, _message()) == "queued"
    connection.close()
    assert early == []


async def test_a_refused_recipient_after_a_pipelined_data_sends_an_empty_message(
    scripted: Any,
) -> None:
    after_refusal: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        [await reader.readline() for _ in range(3)]
        # RFC 2920 3.1: this server accepts DATA although it refused the recipient.
        writer.write(b"250 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n")
        after_refusal.append(await reader.readline())  # the lone dot: no content at all
        writer.write(b"554 no valid recipients\r\n")
        after_refusal.append(await reader.readline())
        writer.write(b"250 reset\r\n")
        [await reader.readline() for _ in range(3)]  # the next message, same connection
        writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        await _data(reader)
        writer.write(b"250 queued\r\n")

    connection = await _connected(await scripted(script))
    with pytest.raises(smtp.Rejected, match=r"550 5\.1\.1 no such user"):
        await smtp.send(connection, _message("gone@example.com"))
    assert after_refusal == [b".\r\n", b"RSET\r\n"]
    assert await smtp.send(connection, _message()) == "queued"
    connection.close()


async def test_a_server_that_closes_mid_envelope_is_trouble_with_the_server(
    scripted: Any,
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        [await reader.readline() for _ in range(3)]
        writer.write(b"421 4.3.2 shutting down\r\n")

    connection = await _connected(await scripted(script))
    with pytest.raises(ReplyError, match=r"421 4\.3\.2"):  # not Deferred: not about this message
        await smtp.send(connection, _message())
    assert not connection.is_connected


async def test_replies_up_to_a_close_still_say_which_step_refused(scripted: Any) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        [await reader.readline() for _ in range(3)]
        writer.write(b"250 ok\r\n550 5.1.1 no such user\r\n554 no valid recipients\r\n")
        # ...and the server hangs up without a 421.

    connection = await _connected(await scripted(script))
    with pytest.raises(smtp.Rejected, match="550"):  # this message, not the server
        await smtp.send(connection, _message("gone@example.com"))
    connection.close()


async def test_a_reply_nobody_asked_for_retires_the_connection(scripted: Any) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        [await reader.readline() for _ in range(3)]
        writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        await _data(reader)
        writer.write(b"250 queued\r\n250 and this one answers nothing\r\n")
        await reader.readline()  # until the client hangs up

    connection = await _connected(await scripted(script))
    assert await smtp.send(connection, _message()) == "queued"
    assert not connection.is_connected  # the next message would read the stray reply


async def test_plain_text_after_the_starttls_reply_is_refused(scripted: Any) -> None:
    """Bytes sent with the 220 to STARTTLS (by a man in the middle, say) would pass for
    answers given over TLS: the client stops before the handshake."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\r\n"
        writer.write(b"220 go ahead\r\n250-forged\r\n250 AUTH PLAIN\r\n")
        await reader.readline()  # until the client hangs up

    with pytest.raises(SmtpError, match="sent data after its STARTTLS reply"):
        await _connected(await scripted(script, starttls=True))


async def test_refusals_without_pipelining_keep_the_connection() -> None:
    handler = FaultyHandler(pipelining=False)
    handler.refuse["gone@example.com"] = "550 5.1.1 no such user"
    handler.data_replies.append("452 4.3.1 insufficient storage")
    with Sink(handler) as sink:
        connection = await _connected(SmtpConfig(host=sink.host, port=sink.port, timeout=5))
        with pytest.raises(smtp.Rejected, match="550"):
            await smtp.send(connection, _message("gone@example.com"))
        with pytest.raises(smtp.Deferred, match="452"):
            await smtp.send(connection, _message())
        await smtp.send(connection, _message())
        await connection.quit()
    assert len(handler.messages) == 1
    assert handler.connections == 1


# TLS and AUTH, against aiosmtpd with a certificate made for 127.0.0.1.

USER, PASSWORD = "mailer", "s3cret pass"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def trusted(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The server's context; the client trusts its certificate (SSL_CERT_FILE)."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class _Authenticator:
    def __init__(self) -> None:
        self.logins: list[tuple[str, str]] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((mechanism, login))
        # handled=False: aiosmtpd answers 535 itself on a refusal
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False)


@pytest.fixture
def secure_sink(trusted: ssl.SSLContext) -> Iterator[tuple[Sink, _Authenticator]]:
    """aiosmtpd insisting on STARTTLS, then AUTH (PLAIN or LOGIN) over it."""
    authenticator = _Authenticator()
    with Sink(
        tls_context=trusted,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    ) as sink:
        yield sink, authenticator


async def test_starttls_then_auth_delivers(secure_sink: tuple[Sink, _Authenticator]) -> None:
    sink, authenticator = secure_sink
    config = SmtpConfig(
        host=sink.host, port=sink.port, username=USER, password=SecretStr(PASSWORD), starttls=True
    )
    connection = await _connected(config)
    await smtp.send(connection, _message())
    await connection.quit()
    assert len(sink.messages) == 1
    assert authenticator.logins == [("PLAIN", USER)]


async def test_a_wrong_password_is_trouble_with_the_server_at_connect(
    secure_sink: tuple[Sink, _Authenticator],
) -> None:
    sink, _ = secure_sink
    config = SmtpConfig(
        host=sink.host, port=sink.port, username=USER, password=SecretStr("no"), starttls=True
    )
    with pytest.raises(ReplyError, match="535") as refused:
        await _connected(config)
    assert refused.value.command == "AUTH"
    assert isinstance(refused.value, smtp.TRANSIENT_ERRORS)  # retried, not a message error
    assert sink.messages == []


async def test_implicit_tls_delivers(trusted: ssl.SSLContext) -> None:
    with Sink(ssl_context=trusted) as sink:
        connection = await _connected(
            SmtpConfig(host=sink.host, port=sink.port, ssl_tls=True, timeout=5)
        )
        await smtp.send(connection, _message())
        await connection.quit()
    assert len(sink.messages) == 1


async def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    # SSL_CERT_FILE is not set: the client does not trust this certificate.
    with Sink(ssl_context=context) as sink, pytest.raises(ssl.SSLCertVerificationError):
        await _connected(SmtpConfig(host=sink.host, port=sink.port, ssl_tls=True, timeout=5))
    assert sink.messages == []
    assert issubclass(ssl.SSLCertVerificationError, smtp.TRANSIENT_ERRORS)


async def test_a_cancelled_connect_raises_cancelled_whenever_the_cancel_comes() -> None:
    """A worker told to stop while it connects stops: the cancellation is never traded
    for the connection's own outcome, however close the two come."""
    with socket.socket() as probe:  # a port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = SmtpConfig(host="127.0.0.1", port=port, timeout=5)
    outcomes: set[str] = set()
    for steps in range(40):  # the cancel lands at every point of the refused connect
        task = asyncio.ensure_future(SmtpConnection(config).connect())
        for _ in range(steps):
            await asyncio.sleep(0)
        if task.done():
            outcomes.add("finished first")
            with contextlib.suppress(OSError):
                await task
            continue
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        outcomes.add("cancelled")
    assert outcomes == {"cancelled", "finished first"}  # both ends of the race were met
