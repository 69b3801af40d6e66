"""Recording one bounce or complaint: store it raw, match it, act on it.

`record` is the one entry point for every source (inbound reports, webhooks):

1. match the ledger row: by the VERP reference when the source has one, else by
   the original Message-ID, else the latest sent row to the user with that
   address; the row's address is the one acted on;
2. store the raw event once: a second delivery of the same provider event id
   (providers retry their webhooks) changes nothing;
3. mark the ledger row (``email_messages.feedback``; a complaint is never
   overwritten by a later bounce report);
4. suppress: a hard bounce or a complaint at once, a soft bounce when the
   address has had ``soft_bounce_limit`` of them within ``soft_bounce_window``;
5. check the circuit breaker of the row's promotion run.

It runs on the caller's session and never commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Interval, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.feedback import breaker, suppressions
from jobs.feedback.reports import COMPLAINT, HARD_BOUNCE, KINDS, SOFT_BOUNCE
from jobs.models import EmailMessage, EmailStatus, FeedbackEvent, SuppressionReason, User

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """A bounce or complaint from any source, before it is recorded."""

    provider: str  # inbound, ses, postmark, webhook
    event_id: str  # unique per provider
    kind: str  # hard_bounce, soft_bounce, complaint
    address: str | None
    raw: str
    detail: str | None = None
    ledger_id: int | None = None  # from a VERP return path
    original_message_id: str | None = None


@dataclass(frozen=True)
class Policy:
    soft_bounce_limit: int
    soft_bounce_window: timedelta
    thresholds: breaker.Thresholds


@dataclass(frozen=True)
class Recorded:
    event_id: int | None  # None: a duplicate, nothing changed
    ledger_id: int | None
    address: str | None
    suppressed: SuppressionReason | None = None
    paused: tuple[breaker.Paused, ...] = ()


async def _match(session: AsyncSession, event: Event) -> tuple[int, str] | None:
    columns = (EmailMessage.id, EmailMessage.to_address)
    if event.ledger_id is not None:
        row = (
            await session.execute(select(*columns).where(EmailMessage.id == event.ledger_id))
        ).first()
        if row is not None:
            return int(row[0]), str(row[1])
    if event.original_message_id:
        query = select(*columns).where(EmailMessage.message_id == event.original_message_id.strip())
        row = (await session.execute(query.limit(1))).first()
        if row is not None:
            return int(row[0]), str(row[1])
    if event.address:  # through the user (indexed), not a scan of the ledger
        query = (
            select(*columns)
            .join(User, User.id == EmailMessage.user_id)
            .where(
                func.lower(User.email) == suppressions.normalize(event.address),
                EmailMessage.status == EmailStatus.SENT,
            )
            .order_by(EmailMessage.id.desc())
            .limit(1)
        )
        row = (await session.execute(query)).first()
        if row is not None:
            return int(row[0]), str(row[1])
    return None


_SOFT_BOUNCES = text(
    """
    SELECT count(*) FROM feedback_events
     WHERE address = :address AND kind = 'soft_bounce' AND received_at >= now() - :window
    """
).bindparams(bindparam("window", type_=Interval))


async def record(session: AsyncSession, event: Event, policy: Policy) -> Recorded:
    """Store, match and act on ``event`` (see the module docstring)."""
    if event.kind not in KINDS:
        raise ValueError(f"unknown feedback kind {event.kind!r} (one of {', '.join(KINDS)})")
    matched = await _match(session, event)
    ledger_id = matched[0] if matched else None
    # The address we mail, when the row is known: a report may name where the
    # message was forwarded to instead.
    raw_address = matched[1] if matched else event.address
    address = suppressions.normalize(raw_address) if raw_address else None
    stored = await session.scalar(
        insert(FeedbackEvent)
        .values(
            provider=event.provider,
            event_id=event.event_id[:500],
            kind=event.kind,
            address=address or "",
            detail=event.detail,
            email_message_id=ledger_id,
            raw=event.raw,
        )
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(FeedbackEvent.id)
    )
    if stored is None:
        logger.info("%s event %s already recorded", event.provider, event.event_id)
        return Recorded(None, ledger_id, address)
    if ledger_id is not None:
        await session.execute(
            update(EmailMessage)
            .where(EmailMessage.id == ledger_id)
            .values(
                feedback=func.coalesce(func.nullif(EmailMessage.feedback, SOFT_BOUNCE), event.kind)
                if event.kind != COMPLAINT
                else event.kind
            )
        )
    reason = await _suppression(session, event.kind, address, policy)
    if reason is not None and address is not None:
        await session.execute(
            suppressions.suppress(address, reason, f"{event.provider}: {event.kind}")
        )
    paused: list[breaker.Paused] = []
    if ledger_id is not None and event.kind != SOFT_BOUNCE:
        paused = await breaker.check_messages(session, [ledger_id], policy.thresholds)
    logger.info(
        "%s from %s for %s (ledger row %s)%s",
        event.kind,
        event.provider,
        address,
        ledger_id,
        f": suppressed ({reason.value})" if reason else "",
    )
    return Recorded(int(stored), ledger_id, address, reason, tuple(paused))


async def _suppression(
    session: AsyncSession, kind: str, address: str | None, policy: Policy
) -> SuppressionReason | None:
    if address is None:
        return None
    if kind == HARD_BOUNCE:
        return SuppressionReason.HARD_BOUNCE
    if kind == COMPLAINT:
        return SuppressionReason.COMPLAINT
    soft = await session.scalar(
        _SOFT_BOUNCES, {"address": address, "window": policy.soft_bounce_window}
    )
    return SuppressionReason.HARD_BOUNCE if int(soft or 0) >= policy.soft_bounce_limit else None
