"""`jobs inbound`: an SMTP listener (aiosmtpd) for bounces and complaints.

It accepts mail only for MAIL_BOUNCE_DOMAIN (any other recipient is refused at
RCPT), reads each message as a DSN or a feedback report (`jobs.feedback.reports`)
and records every bounce or complaint in it (`jobs.feedback.events.record`), one
transaction per message. A VERP recipient names the ledger row; anything that
is neither a DSN nor an ARF (an auto-reply, spam) is accepted and dropped with a
log line, so the sender does not retry it. A database error answers 451, so the
reporting server tries again later.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.errors import describe
from jobs.feedback import events, reports
from jobs.feedback.config import Verp
from jobs.feedback.verp import ledger_ref

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 10 * 2**20


class InboundHandler:
    """aiosmtpd handler: accept the bounce domain, record DSNs and ARFs."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], verp: Verp, policy: events.Policy
    ) -> None:
        self.sessions = sessions
        self.verp = verp
        self.policy = policy

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.rpartition("@")[2].lower() != self.verp.domain:
            return f"550 5.1.1 this server only takes mail for {self.verp.domain}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        found = reports.parse(raw)
        if not found:
            logger.info(
                "inbound: dropped a message from %s to %s: neither a DSN nor a feedback report",
                envelope.mail_from,
                ", ".join(envelope.rcpt_tos),
            )
            return "250 OK (dropped: not a bounce or complaint report)"
        ledger_id = next(
            (
                ref
                for rcpt in envelope.rcpt_tos
                if (ref := ledger_ref(self.verp.key, rcpt, self.verp.domain)) is not None
            ),
            None,
        )
        text = raw.decode("utf-8", errors="replace")
        try:
            async with self.sessions() as db, db.begin():
                for report in found:
                    await events.record(
                        db,
                        events.Event(
                            provider="inbound",
                            event_id=report.event_id,
                            kind=report.kind,
                            address=report.address,
                            raw=text,
                            detail=report.detail,
                            ledger_id=ledger_id,
                            original_message_id=report.original_message_id,
                        ),
                        self.policy,
                    )
        except Exception as exc:  # the reporting server keeps it and tries again
            logger.warning("inbound: could not record a report: %s", describe(exc))
            return "451 4.3.0 cannot record this report now, try again later"
        return "250 OK"


async def serve(
    handler: InboundHandler, host: str, port: int, stop: asyncio.Event | None = None
) -> None:
    """Listen on ``host:port`` until ``stop`` is set (or SIGTERM/SIGINT when None)."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=MAX_MESSAGE_BYTES, enable_SMTPUTF8=True),
        host=host,
        port=port,
    )
    logger.info("inbound: listening on %s:%s for mail to @%s", host, port, handler.verp.domain)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        logger.info("inbound: stopped")
