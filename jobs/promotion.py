"""The daily promotion: one run per (campaign, period), fanned out chunk by chunk.

Each chunk is its own transaction (`jobs.fanout.next_chunk`). A run that died
halfway resumes from its cursor when triggered again for the same period; a run
that finished returns its summary and queues nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs.errors import UnknownCampaign
from jobs.fanout import ELIGIBLE, Chunk, PromotionConfig, next_chunk
from jobs.models import Campaign, EmailMessage, EmailStatus, PromotionRun, User
from jobs.settings import Settings
from jobs.unsubscribe import signing_key

logger = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]


def promotion_config(settings: Settings) -> PromotionConfig:
    """`PromotionConfig` from the settings; `ConfigError` if no signing key is available."""
    frontend = str(settings.FRONTEND_URL).rstrip("/")
    link = str(settings.UNSUBSCRIBE_URL) if settings.UNSUBSCRIBE_URL else frontend + "/unsubscribe"
    if not link.startswith("https://"):
        logger.warning("unsubscribe link %s is not https: one-click unsubscribe needs https", link)
    return PromotionConfig(
        chunk_size=settings.PROMOTION_CHUNK_SIZE,
        frontend_url=frontend,
        unsubscribe_url=link,
        unsubscribe_mailto=settings.UNSUBSCRIBE_MAILTO,
        key=signing_key(settings),
    )


@dataclass(frozen=True)
class Summary:
    """A run's counts; ``sent``/``failed`` are read from the ledger, so they grow
    as deliveries finish."""

    run_id: int
    campaign: str
    period: datetime
    total_users: int
    queued: int
    sent: int
    failed: int
    finished: bool

    def as_dict(self) -> dict[str, Any]:
        """The Celery design's summary shape, plus the run id and the delivery counts."""
        return {
            "success_count": self.queued,
            "error_count": self.total_users - self.queued,
            "total_users": self.total_users,
            "run_id": self.run_id,
            "campaign": self.campaign,
            "period": self.period.isoformat(),
            "sent": self.sent,
            "failed": self.failed,
            "finished": self.finished,
        }


async def summarize(session: AsyncSession, run_id: int) -> Summary:
    run = await session.get(PromotionRun, run_id, populate_existing=True)
    assert run is not None
    name = await session.scalar(select(Campaign.name).where(Campaign.id == run.campaign_id))
    statuses = await session.execute(
        select(EmailMessage.status, func.count())
        .where(EmailMessage.promotion_run_id == run_id)
        .group_by(EmailMessage.status)
    )
    counts: dict[EmailStatus, int] = {status: n for status, n in statuses.all()}
    return Summary(
        run_id=run.id,
        campaign=str(name),
        period=run.period,
        total_users=run.total_users,
        queued=run.queued,
        sent=counts.get(EmailStatus.SENT, 0),
        failed=counts.get(EmailStatus.FAILED, 0),
        finished=run.finished_at is not None,
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


async def open_run(session: AsyncSession, campaign_id: int, period: datetime) -> int:
    """The run of ``campaign_id`` for ``period``, created if it does not exist yet."""
    created = await session.scalar(
        insert(PromotionRun)
        .values(campaign_id=campaign_id, period=period)
        .on_conflict_do_nothing(index_elements=["campaign_id", "period"])
        .returning(PromotionRun.id)
    )
    if created is not None:
        return int(created)
    existing = await session.scalar(
        select(PromotionRun.id).where(
            PromotionRun.campaign_id == campaign_id, PromotionRun.period == period
        )
    )
    assert existing is not None
    return int(existing)


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
    result: dict[str, int] = {}
    async with sessions() as session:
        for item in await campaigns_to_run(session, campaign):
            run = await session.scalar(
                select(PromotionRun).where(
                    PromotionRun.campaign_id == item.id, PromotionRun.period == period
                )
            )
            if run is not None and run.finished_at is not None:
                result[item.name] = 0
                continue
            after = run.last_user_id if run is not None else 0
            query = select(func.count()).select_from(User).where(User.id > after, *ELIGIBLE)
            result[item.name] = int(await session.scalar(query) or 0)
    return result
