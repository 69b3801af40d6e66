"""Opening, when a worker starts, what its first delivery would otherwise open.

The first email after a start used to pay for everything done once: the
SQLAlchemy engine's first connection (server version, type lookups), the
installation id, compiling the batch lock and the templates, and the TCP connect
and EHLO of the first SMTP connection. Measured on an idle worker, the first few welcome emails
took 70 to 130 ms where the rest took 7 to 15 ms. The worker does it before it
fetches a job instead. Best effort: a server that does not answer yet is logged
and left to the first delivery, as before.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from jobs.db import async_engine
from jobs.db.installation import installation_id_async
from jobs.errors import describe
from jobs.mail import ledger
from jobs.mail.config import MailConfig
from jobs.mail.pool import get_pool
from jobs.mail.templates import compile_all
from jobs.settings import Settings

logger = logging.getLogger(__name__)

SMTP_PATIENCE = 5.0  # seconds the start waits for the first SMTP connection


async def warm_up(settings: Settings, url: str) -> None:
    """Connect to the database and to the transactional SMTP server, and compile the
    email templates, so that the first job finds them ready."""
    mail = MailConfig.for_stream(settings, bulk=False)
    try:
        async with AsyncSession(async_engine(url)) as session, session.begin():
            await installation_id_async(session, url)
            # The batch lock is the costliest statement to compile (10 ms of the first
            # email): compiled now, on no row (ledger ids start at 1; nothing is taken).
            await ledger.lock_batch(session, [0], take=0)
    except Exception as exc:  # best effort: the worker's own start reports the database
        logger.warning("warm-up: database not ready: %s", describe(exc))
    compile_all(mail.template_dirs)
    pool = get_pool(mail.smtp, settings.MAIL_MAX_CONNECTIONS, mail.stream)
    try:
        async with asyncio.timeout(SMTP_PATIENCE), pool.connection():
            pass  # opened, then kept idle in the pool
    except Exception as exc:  # best effort: refused, timed out, bad TLS, ...
        logger.warning(
            "warm-up: SMTP server %s not reachable yet (%s); delivery connects when it sends",
            mail.smtp.address,
            describe(exc),
        )
