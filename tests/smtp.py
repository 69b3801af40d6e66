"""A real SMTP peer for tests: jobs' aiosmtpd sink with injectable faults."""

from __future__ import annotations

import email
import email.policy
from collections import deque
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session

from jobs.sink import SinkHandler


class FaultyHandler(SinkHandler):
    """Accepts mail like the sink, unless told otherwise:

    - ``refuse[address] = "550 ..."``: that recipient is refused at RCPT;
    - ``data_replies``: replies used (once each) for the next DATA commands
      instead of accepting, e.g. ``"421 4.3.0 try later"``;
    - ``drop_after``: after that many accepted messages, the next DATA
      drops the connection without an answer (once).
    """

    def __init__(self) -> None:
        super().__init__()
        self.refuse: dict[str, str] = {}
        self.data_replies: deque[str] = deque()
        self.drop_after: int | None = None

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
            assert server.transport is not None
            server.transport.abort()
            return "421 dropped"
        if self.data_replies:
            return self.data_replies.popleft()
        return await super().handle_DATA(server, session, envelope)

    def parsed(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
            for raw in self.messages
        ]
