"""A real SMTP peer for tests: jobs' aiosmtpd sink with injectable faults."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections import deque
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from jobs.dev.sink import SinkHandler


class FaultyHandler(SinkHandler):
    """Accepts mail like the sink, unless told otherwise:

    - ``refuse[address] = "550 ..."``: that recipient is refused at RCPT;
    - ``data_replies``: replies used (once each) for the next DATA commands
      instead of accepting, e.g. ``"421 4.3.0 try later"``;
    - ``drop_after``: after that many accepted messages, the next DATA
      drops the connection without an answer (once);
    - ``mail_replies``: replies used (once each) for the next MAIL commands,
      e.g. ``"530 5.7.0 Authentication required"``;
    - ``stall_mail``: seconds to sit on the next MAIL commands (once each)
      before answering, like a hung server.

    It also notes when each message arrived (``times``, monotonic clock), how
    many sessions said QUIT, and can drop every open connection (``drop_all``).
    """

    def __init__(self, *, pipelining: bool = True) -> None:
        super().__init__(pipelining=pipelining)
        self.refuse: dict[str, str] = {}
        self.data_replies: deque[str] = deque()
        self.mail_replies: deque[str] = deque()
        self.drop_after: int | None = None
        self.stall_mail: deque[float] = deque()
        self.times: list[float] = []
        self.senders: list[str] = []  # the envelope sender of each accepted message
        self.quits = 0
        self._servers: list[SMTP] = []

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self._servers.append(server)
        if self.mail_replies:
            return self.mail_replies.popleft()
        if self.stall_mail:
            await asyncio.sleep(self.stall_mail.popleft())
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.drop_after is not None and len(self.messages) >= self.drop_after:
            self.drop_after = None
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "421 dropped"
        if self.data_replies:
            return self.data_replies.popleft()
        reply = await super().handle_DATA(server, session, envelope)
        self.times.append(time.monotonic())
        self.senders.append(str(envelope.mail_from))
        return reply

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

    def drop_all(self) -> None:
        """Close every connection that sent mail, server side, as an idle timeout would."""
        for server in self._servers:
            transport: Any = server.transport
            if transport is not None:
                server.loop.call_soon_threadsafe(transport.abort)
        self._servers.clear()

    def parsed(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for raw in self.messages]
