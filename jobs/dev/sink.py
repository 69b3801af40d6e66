"""A local SMTP sink (aiosmtpd, in-process) for the demo and the tests.

It accepts every message, keeps it in memory, optionally writes it as an
``.eml`` file, and counts connections, so a test can check reuse.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

logger = logging.getLogger(__name__)


class SinkHandler:
    """aiosmtpd handler: store each message; subclass to inject faults.

    It offers PIPELINING (RFC 2920) as Postfix, Gmail or SES do: aiosmtpd reads
    commands in order and answers each, which is all a pipelining client needs.
    """

    def __init__(self, outbox: Path | None = None, *, pipelining: bool = True) -> None:
        self.outbox = outbox
        self.pipelining = pipelining
        self.messages: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()

    def connected(self) -> None:
        with self._lock:
            self.connections += 1

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        data = content.encode() if isinstance(content, str) else bytes(content or b"")
        with self._lock:
            self.messages.append(data)
            number = len(self.messages)
        if self.outbox is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}-{number}.eml"
            (self.outbox / name).write_bytes(data)
        return "250 Message accepted for delivery"


class _CountingSMTP(SMTP):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        connected = getattr(self.event_handler, "connected", None)
        if connected is not None:
            connected()


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Sink:
    """An SMTP server on a free loopback port, running in its own thread."""

    def __init__(
        self,
        handler: SinkHandler | None = None,
        *,
        outbox: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        smtputf8: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        **server_options: Any,
    ) -> None:
        """``ssl_context``: implicit TLS; ``server_options``: aiosmtpd's own (STARTTLS, AUTH)."""
        self.handler = handler or SinkHandler(outbox)
        self.host = host
        self.port = port or free_port(host)
        self._controller = _Controller(
            self.handler,
            hostname=host,
            port=self.port,
            ssl_context=ssl_context,
            data_size_limit=50 * 2**20,
            enable_SMTPUTF8=smtputf8,  # offer SMTPUTF8 (RFC 6531) like most real servers
            **server_options,
        )

    def start(self) -> Sink:
        self._controller.start()
        self.handler.connections = 0  # the controller's own readiness probe
        logger.info("SMTP sink listening on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def messages(self) -> list[bytes]:
        return self.handler.messages
