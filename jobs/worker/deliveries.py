"""What a run of delivery batches works with, for the delivery task and the sweeper:
its `Delivery`, built from the settings, and its session."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from jobs.db import async_engine
from jobs.db.installation import installation_id_async
from jobs.feedback.breaker import RunChecks
from jobs.feedback.config import thresholds
from jobs.mail.config import MailConfig
from jobs.mail.delivery import Delivery, batch_size
from jobs.mail.journal import get_journal
from jobs.mail.pool import get_pool
from jobs.mail.ratelimit import DomainLimits, RateLimiter
from jobs.settings import Settings

_breaker_checks: dict[str, RunChecks] = {}  # per database: this process's checks of its runs


async def delivery_for(
    settings: Settings,
    url: str,
    *,
    bulk: bool,
    final_attempt: bool,
    interrupted: Callable[[], str],
) -> Delivery:
    """The process's SMTP pool, limits and journal for the transactional stream, or
    the bulk one (promotion chunks, which also get the circuit breaker)."""
    mail = MailConfig.for_stream(settings, bulk=bulk)
    async with AsyncSession(async_engine(url)) as session:
        installation = await installation_id_async(session, url)
    return Delivery(
        mail=mail,
        pool=get_pool(mail.smtp, settings.MAIL_MAX_CONNECTIONS, mail.stream),
        limiter=RateLimiter(async_engine(url), mail.rate_limit, mail.budget),
        final_attempt=final_attempt,
        installation=installation,
        interrupted=interrupted,
        batch_size=batch_size(mail.rate_limit),
        breaker=thresholds(settings) if bulk else None,
        breaker_checks=_breaker_checks.setdefault(url, RunChecks()),
        domains=DomainLimits(async_engine(url), mail.domain_limits),
        journal=get_journal(url),
    )


@contextlib.asynccontextmanager
async def batch_session(url: str) -> AsyncIterator[AsyncSession]:
    """A session on one connection for a run of batches, one transaction each.

    The connection is in AUTOCOMMIT, so psycopg sends no BEGIN of its own: each
    batch's lock opens its transaction in the same round trip (`ledger.lock_batch`),
    and ``session.begin()``'s commit or rollback ends it.
    """
    async with (
        async_engine(url).connect() as connection,
        AsyncSession(
            bind=await connection.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False,
        ) as session,
    ):
        yield session
