"""Promotion runs: one row per (campaign, period), its cursor and its counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.models import Campaign, EmailMessage, EmailStatus, PromotionRun, User
from jobs.promotions.fanout import ELIGIBLE


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


async def remaining_recipients(session: AsyncSession, campaign_id: int, period: datetime) -> int:
    """How many users a run of ``campaign_id`` for ``period`` would still queue."""
    run = await session.scalar(
        select(PromotionRun).where(
            PromotionRun.campaign_id == campaign_id, PromotionRun.period == period
        )
    )
    if run is not None and run.finished_at is not None:
        return 0
    after = run.last_user_id if run is not None else 0
    query = select(func.count()).select_from(User).where(User.id > after, *ELIGIBLE)
    return int(await session.scalar(query) or 0)
