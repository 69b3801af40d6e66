"""The daily promotion: one run per (campaign, period), fanned out chunk by chunk.

Each chunk is its own transaction (`jobs.promotions.fanout.next_chunk`). A run that died
halfway resumes from its cursor when triggered again for the same period; a run
that finished returns its summary and queues nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.errors import UnknownCampaign
from jobs.feedback.breaker import cancel_run, resume_run
from jobs.mail.address import ascii_domain
from jobs.mail.enqueue import defer_delivery_async
from jobs.models import Campaign, PromotionRun
from jobs.promotions.fanout import Chunk, PromotionConfig, next_chunk
from jobs.promotions.runs import Summary, open_run, remaining_recipients, summarize
from jobs.promotions.unsubscribe import signing_key
from jobs.settings import Settings
from jobs.tasks import BULK_PRIORITY

logger = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]


def unsubscribe_url(settings: Settings) -> str:
    """UNSUBSCRIBE_URL; else `jobs web`'s endpoint (WEB_BASE_URL); else FRONTEND_URL's."""
    if settings.UNSUBSCRIBE_URL:
        return str(settings.UNSUBSCRIBE_URL)
    base = settings.WEB_BASE_URL or settings.FRONTEND_URL
    return str(base).rstrip("/") + "/unsubscribe"


@functools.cache  # once per link and process: a worker builds this config at start and per run
def _warn_not_https(link: str) -> None:
    logger.warning("unsubscribe link %s is not https: one-click unsubscribe needs https", link)


def promotion_config(settings: Settings, *, key: bytes | None = None) -> PromotionConfig:
    """`PromotionConfig` from the settings; `ConfigError` if no signing key is available.

    ``key`` replaces the signing key (a preview, which signs nothing, passes ``b""``).
    """
    frontend = str(settings.FRONTEND_URL).rstrip("/")
    link = unsubscribe_url(settings)
    if not link.startswith("https://"):
        _warn_not_https(link)
    return PromotionConfig(
        chunk_size=settings.PROMOTION_CHUNK_SIZE,
        frontend_url=frontend,
        unsubscribe_url=link,
        unsubscribe_mailto=settings.UNSUBSCRIBE_MAILTO,
        key=signing_key(settings) if key is None else key,
        list_domain=ascii_domain(settings.MAIL_FROM),
        postal_address=settings.PROMOTION_POSTAL_ADDRESS,
    )


async def campaigns_to_run(session: AsyncSession, name: str | None) -> Sequence[Campaign]:
    """Every active campaign, or just ``name`` (which must exist and be active)."""
    if name is None:
        query = select(Campaign).where(Campaign.active).order_by(Campaign.id)
        return (await session.scalars(query)).all()
    campaign = await session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        raise UnknownCampaign(f"no campaign named {name!r}")
    if not campaign.active:
        raise UnknownCampaign(f"campaign {name!r} is disabled: `jobs campaigns enable {name}`")
    return [campaign]


async def run_campaign(
    sessions: Sessions,
    campaign: Campaign,
    period: datetime,
    config: PromotionConfig,
    on_chunk: Callable[[Chunk], None] | None = None,
) -> Summary:
    """Fan ``campaign`` out for ``period`` (create, resume, or find finished)."""
    async with sessions() as session, session.begin():
        run_id = await open_run(session, campaign.id, period)
    chunks = 0
    while True:
        async with sessions() as session, session.begin():
            chunk = await next_chunk(session, run_id, campaign, config)
        if chunk is None:
            break
        chunks += 1
        if on_chunk is not None:
            on_chunk(chunk)
    async with sessions() as session:
        summary = await summarize(session, run_id)
    logger.info(
        "promotion %r for %s: run %s, %d chunk(s) this time, %s",
        campaign.name,
        period.isoformat(),
        run_id,
        chunks,
        summary.as_dict(),
    )
    return summary


async def send_promotions(
    sessions: Sessions,
    *,
    period: datetime,
    config: PromotionConfig,
    campaign: str | None = None,
    on_chunk: Callable[[Chunk], None] | None = None,
) -> list[Summary]:
    """Run every active campaign (or one) for ``period``; exactly once per period."""
    async with sessions() as session:
        campaigns = await campaigns_to_run(session, campaign)
    return [await run_campaign(sessions, c, period, config, on_chunk) for c in campaigns]


async def count_recipients(
    sessions: Sessions, *, period: datetime, campaign: str | None = None
) -> dict[str, int]:
    """Per campaign, how many users a run for ``period`` would still queue. Writes nothing."""
    async with sessions() as session:
        return {
            item.name: await remaining_recipients(session, item.id, period)
            for item in await campaigns_to_run(session, campaign)
        }


# Deliverability: runs the circuit breaker paused ------------------------------


async def resume_paused(
    sessions: Sessions, run_id: int, config: PromotionConfig
) -> tuple[Summary, int]:
    """Resume a paused run: its pending rows are queued again (one delivery job per
    ``chunk_size``), then the fan-out goes on from its cursor. Returns the summary
    and how many pending rows were queued again."""
    async with sessions() as session, session.begin():
        pending = await resume_run(session, run_id)
        for start in range(0, len(pending), config.chunk_size):
            chunk = pending[start : start + config.chunk_size]
            await defer_delivery_async(session, chunk, priority=BULK_PRIORITY)
        run = await session.get(PromotionRun, run_id)
        assert run is not None
        campaign = await session.get(Campaign, run.campaign_id)
        assert campaign is not None
        period = run.period
    summary = await run_campaign(sessions, campaign, period, config)
    return summary, len(pending)


async def cancel_paused(sessions: Sessions, run_id: int) -> int:
    """End a run for good; returns how many pending emails failed as cancelled."""
    async with sessions() as session, session.begin():
        return await cancel_run(session, run_id)
