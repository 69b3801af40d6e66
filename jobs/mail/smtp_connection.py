"""One SMTP client connection (RFC 5321) on asyncio streams, with PIPELINING.

Hand-written rather than aiosmtplib because a message there costs four round
trips and about four times the CPU: aiosmtplib waits for each reply before the
next command and has no PIPELINING (RFC 2920), and its protocol drops replies
that arrive together. Here, when the server offers PIPELINING, MAIL, RCPT and
DATA go out in one write and the message in a second: two round trips.

It speaks what delivery needs and no more: EHLO (HELO as a fallback),
STARTTLS (RFC 3207) or implicit TLS, AUTH PLAIN and LOGIN (RFC 4954),
SMTPUTF8 (RFC 6531), one recipient per message, RSET, NOOP and QUIT.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import ssl

from jobs.mail.config import SmtpConfig

logger = logging.getLogger(__name__)

MAX_LINE = 8192  # bytes in one reply line (RFC 5321 allows 512; be lenient)
MAX_REPLY_LINES = 100
HOSTNAME_WAIT = 5.0  # seconds for this host's name (DNS); "localhost" after that
CLOSE_WAIT = 1.0  # seconds a close waits for the transport (TLS: the server's goodbye)


class SmtpError(Exception):
    """Trouble talking to the SMTP server: any error of this module."""


class Disconnected(SmtpError, ConnectionError):
    """The connection is closed, or the server closed it."""


class NotSupported(SmtpError):
    """The server does not offer an extension this message or setting needs."""


class ReplyError(SmtpError):
    """The server answered a command with an unexpected reply."""

    def __init__(self, code: int, message: str, command: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.command = command  # MAIL, RCPT, DATA, ...: which step the reply refused


class Reply:
    __slots__ = ("code", "message")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.message!r})"


_local_name: str | None = None


async def _local_hostname() -> str:
    """This host's name for EHLO, looked up once per process (it may ask DNS)."""
    global _local_name
    if _local_name is None:
        try:
            async with asyncio.timeout(HOSTNAME_WAIT):
                name = await asyncio.to_thread(socket.getfqdn)
        except TimeoutError:
            name = ""
        _local_name = name if name and name.isascii() and " " not in name else "localhost"
    return _local_name


def _mailbox(address: str, smtputf8: bool) -> bytes:
    """``<address>`` for MAIL or RCPT; `ValueError` for one that cannot go on the wire."""
    if any(c in address for c in "\r\n\0<> \t") or not address:
        raise ValueError(f"address {address!r} cannot be sent in an SMTP command")
    if not address.isascii() and not smtputf8:
        raise ValueError(f"address {address!r} needs SMTPUTF8")
    return b"<" + address.encode("utf-8") + b">"


def _message_body(data: bytes) -> bytes:
    """``data`` as DATA content: CRLF line ends, dot-stuffed, ended by ``.``."""
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class SmtpConnection:
    """A client connection to ``config``'s server: `connect`, then `send` many messages."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.timeout = config.timeout
        self.extensions: dict[str, str] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_connected(self) -> bool:
        """False once either side closed it (the server's close shows as end of input)."""
        return (
            self._writer is not None
            and not self._writer.is_closing()
            and self._reader is not None
            and not self._reader.at_eof()
        )

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    async def connect(self) -> None:
        """Open the connection, greet, secure it as configured and log in."""
        config = self.config
        context = ssl.create_default_context() if config.ssl_tls or config.starttls else None
        try:
            # Timeouts here are asyncio.timeout, never wait_for: on Python 3.11 wait_for
            # drops a cancellation that comes as the awaited call ends (a refused connect
            # during a worker's start made it ignore its SIGTERM).
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    config.host,
                    config.port,
                    ssl=context if config.ssl_tls else None,
                    limit=MAX_LINE,
                )
            self._expect(await self._reply(), 220, "greeting")
            await self._hello()
            if config.starttls:
                if "STARTTLS" not in self.extensions:
                    raise NotSupported(f"{config.address} does not offer STARTTLS (MAIL_STARTTLS)")
                self._expect(await self._command(b"STARTTLS"), 220, "STARTTLS")
                if self._unread():
                    # Bytes after the 220 came in plain text: read after the handshake, they
                    # would pass for the server's answers (a man in the middle's, CVE-2011-0411).
                    raise SmtpError(f"{config.address} sent data after its STARTTLS reply")
                assert self._writer is not None
                assert context is not None
                async with asyncio.timeout(self.timeout):
                    await self._writer.start_tls(context, server_hostname=config.host)
                await self._hello()
            if config.username:
                password = config.password.get_secret_value() if config.password else ""
                await self._login(config.username, password)
        except Exception:
            await self.aclose()
            raise
        except BaseException:  # cancelled: no waiting
            self.close()
            raise

    async def send(self, sender: str, recipient: str, data: bytes, *, smtputf8: bool) -> str:
        """One message to one recipient; the server's answer to its content.

        Raises `ReplyError` with the refused step (MAIL, RCPT, DATA) when the
        server refuses the message; the envelope is reset, so the connection can
        carry the next message. Raises `ValueError` for an address that cannot
        be sent and `NotSupported` when SMTPUTF8 is needed but not offered.
        """
        if smtputf8 and "SMTPUTF8" not in self.extensions:
            raise NotSupported(f"{self.config.address} does not offer SMTPUTF8")
        mail = b"MAIL FROM:" + _mailbox(sender, smtputf8) + (b" SMTPUTF8" if smtputf8 else b"")
        rcpt = b"RCPT TO:" + _mailbox(recipient, smtputf8)
        body = _message_body(data)
        if self.pipelining:
            self._write(mail + b"\r\n" + rcpt + b"\r\nDATA\r\n")
            replies = [await self._reply()]
            while len(replies) < 3 and replies[-1].code != 421:  # 421: the server closes
                replies.append(await self._reply())
        else:
            replies = [await self._command(mail)]
            if replies[-1].code == 250:
                replies.append(await self._command(rcpt))
            if replies[-1].code in (250, 251):
                replies.append(await self._command(b"DATA"))
        refused = _refused(replies)
        if refused is not None:
            if len(replies) == 3 and replies[2].code == 354:
                # RFC 2920 3.1: DATA was accepted after a refusal: send an empty message.
                await self._command(b".")
            await self._reset()
            raise refused
        self._write(body)
        await self._drain()
        reply = await self._reply()
        if reply.code != 250:
            await self._reset()
            raise ReplyError(reply.code, reply.message, "DATA")
        if self._unread():  # replies nobody asked for: later ones would be mis-paired
            logger.warning("%s sent more replies than commands; closing", self.config.address)
            self.close()
        return reply.message

    async def noop(self) -> None:
        """Prove the connection alive; on any error it is closed."""
        try:
            self._expect(await self._command(b"NOOP"), 250, "NOOP")
        except SmtpError:
            self.close()
            raise

    async def quit(self) -> None:
        """Say QUIT and close; the connection is closed whatever the answer."""
        try:
            await self._command(b"QUIT")
        finally:
            await self.aclose()

    def close(self) -> None:
        """Close now; a TLS connection finishes closing in the background."""
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._reader = None

    async def aclose(self) -> None:
        """Close and wait, briefly, until closed (a TLS goodbye included): a server that
        does not answer must not hold up the caller's error by a whole timeout."""
        writer = self._writer
        self.close()
        if writer is not None:
            with contextlib.suppress(OSError, TimeoutError, SmtpError):
                async with asyncio.timeout(CLOSE_WAIT):
                    await writer.wait_closed()

    # The wire.

    def _unread(self) -> int:
        """Bytes received and not read yet. StreamReader has no public way to tell, so
        this reads its buffer: a reply left there would answer the next command."""
        buffered = getattr(self._reader, "_buffer", b"")
        return len(buffered) if isinstance(buffered, bytes | bytearray) else 0

    def _write(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise Disconnected(f"not connected to {self.config.address}")
        self._writer.write(data)

    async def _drain(self) -> None:
        assert self._writer is not None
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer.drain()
        except BaseException:
            self.close()
            raise

    async def _command(self, line: bytes) -> Reply:
        self._write(line + b"\r\n")
        return await self._reply()

    async def _reply(self) -> Reply:
        """The next reply, all its lines; a timeout or a malformed reply closes the connection."""
        if self._reader is None:
            raise Disconnected(f"not connected to {self.config.address}")
        try:
            async with asyncio.timeout(self.timeout):
                return await self._read_reply(self._reader)
        except TimeoutError:
            self.close()
            raise TimeoutError(
                f"{self.config.address} did not answer in {self.timeout:g} s"
            ) from None
        except (SmtpError, OSError, ValueError) as exc:  # ValueError: a line over MAX_LINE
            self.close()
            if isinstance(exc, SmtpError):
                raise
            raise Disconnected(f"connection to {self.config.address} lost: {exc}") from exc

    async def _read_reply(self, reader: asyncio.StreamReader) -> Reply:
        lines: list[str] = []
        while len(lines) < MAX_REPLY_LINES:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise Disconnected(f"{self.config.address} closed the connection")
            code = line[:3]
            if not code.isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                raise SmtpError(f"malformed reply from {self.config.address}: {line[:80]!r}")
            lines.append(line[4:].strip().decode("utf-8", "replace"))
            if line[3:4] != b"-":
                reply = Reply(int(code), "\n".join(lines))
                if reply.code == 421:  # the server is closing this connection
                    self.close()
                return reply
        raise SmtpError(f"reply from {self.config.address} longer than {MAX_REPLY_LINES} lines")

    def _expect(self, reply: Reply, code: int, command: str) -> None:
        """Raise `ReplyError` unless ``reply`` has ``code`` (the caller closes the connection)."""
        if reply.code != code:
            raise ReplyError(reply.code, reply.message, command)

    async def _reset(self) -> None:
        """RSET after a refused message; a connection that cannot reset is closed."""
        if not self.is_connected:
            return
        try:
            reply = await self._command(b"RSET")
        except (SmtpError, OSError, TimeoutError):
            self.close()
            return
        if reply.code != 250:
            self.close()

    async def _hello(self) -> None:
        name = (await _local_hostname()).encode()
        reply = await self._command(b"EHLO " + name)
        self.extensions = {}
        if reply.code == 250:
            for line in reply.message.split("\n")[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params
        elif 500 <= reply.code < 600:  # no ESMTP: plain HELO, no extensions
            self._expect(await self._command(b"HELO " + name), 250, "HELO")
        else:
            self._expect(reply, 250, "EHLO")

    async def _login(self, username: str, password: str) -> None:
        methods = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in methods:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            reply = await self._command(b"AUTH PLAIN " + token.encode())
        elif "LOGIN" in methods:
            reply = await self._command(b"AUTH LOGIN")
            for secret in (username, password):
                if reply.code != 334:
                    break
                reply = await self._command(base64.b64encode(secret.encode()))
        else:
            raise NotSupported(
                f"{self.config.address} offers no AUTH PLAIN or LOGIN (MAIL_USERNAME is set)"
            )
        self._expect(reply, 235, "AUTH")


def _refused(replies: list[Reply]) -> ReplyError | None:
    """The first refusal among MAIL, RCPT and DATA's replies, if any."""
    for command, expected, reply in zip(
        ("MAIL", "RCPT", "DATA"), ((250,), (250, 251), (354,)), replies, strict=False
    ):
        if reply.code not in expected:
            return ReplyError(reply.code, reply.message, command)
    return None
