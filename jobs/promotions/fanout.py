"""One chunk of a promotion fan-out: the next users after the run's cursor,
their ledger rows, and ONE delivery job, in the caller's transaction.

Set-based: one keyset SELECT of at most ``chunk_size`` (id, email) pairs to sign
the unsubscribe tokens, one ``INSERT ... SELECT`` of every ledger row of the
chunk (``ON CONFLICT DO NOTHING RETURNING id``), one defer. No ORM object per user.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Insert,
    Text,
    bindparam,
    cast,
    exists,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from jobs.mail.enqueue import defer_delivery_async
from jobs.models import Campaign, EmailMessage, PromotionRun, Suppression, User
from jobs.promotions.campaigns import link_url
from jobs.promotions.unsubscribe import make_token
from jobs.tasks import BULK_PRIORITY

PROMOTION_TEMPLATE = "promotion"
PROMOTION_KIND = "promotion"

# Who receives promotions: active users who have not unsubscribed, at an address
# not on the suppression list (for any reason).
ELIGIBLE: tuple[ColumnElement[bool], ...] = (
    User.is_active.is_(True),
    User.unsubscribed_at.is_(None),
    ~exists().where(Suppression.address == func.lower(User.email)),
)


@dataclass(frozen=True)
class PromotionConfig:
    """Plain values the fan-out needs (built from `Settings` at the edge)."""

    chunk_size: int
    frontend_url: str
    unsubscribe_url: str  # the link; "?token=..." (or "&token=...") is appended
    unsubscribe_mailto: str | None
    key: bytes = field(repr=False)
    list_domain: str = "localhost"  # List-Id: <campaign.list_domain> (the sender's domain)
    postal_address: str | None = None  # PROMOTION_POSTAL_ADDRESS, in every footer

    @property
    def token_prefix(self) -> str:
        return self.unsubscribe_url + ("&" if "?" in self.unsubscribe_url else "?") + "token="


@dataclass(frozen=True)
class Chunk:
    run_id: int
    campaign: str
    users: int  # eligible users read in this chunk
    queued: int  # ledger rows created (and handed to one delivery job)


def list_id(campaign: Campaign, domain: str) -> str:
    """The campaign's ``List-Id`` (RFC 2919): its name and ``<slug.domain>``."""
    ascii_name = unicodedata.normalize("NFKD", campaign.name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60].strip("-")
    return f"{campaign.name} <{slug or f'campaign-{campaign.id}'}.{domain}>"


def campaign_context(campaign: Campaign, config: PromotionConfig) -> dict[str, str]:
    """The template context every recipient of ``campaign`` shares (all but
    ``username`` and ``unsubscribe_url``)."""
    return {
        "current_time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "promotion_title": campaign.title,
        "promotion_content": campaign.content,
        "promotion_link": link_url(config.frontend_url, campaign.link_path),
        "frontend_url": config.frontend_url,
        "postal_address": config.postal_address or "",
    }


def promotion_headers(campaign: Campaign, config: PromotionConfig, token: str) -> dict[str, str]:
    """The headers of one promotion (what `_ledger_rows` writes in SQL, for one token)."""
    link = config.token_prefix + token
    unsubscribe = f"<{link}>"
    if config.unsubscribe_mailto:
        unsubscribe += f", <mailto:{config.unsubscribe_mailto}?subject=unsubscribe%20{token}>"
    return {
        "List-Unsubscribe": unsubscribe,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": list_id(campaign, config.list_domain),
    }


def _text(value: str) -> ColumnElement[str]:
    return cast(bindparam(None, value, type_=Text), Text)


def _ledger_rows(
    run: PromotionRun,
    campaign: Campaign,
    config: PromotionConfig,
    users: Sequence[tuple[int, str]],
) -> Insert:
    """The chunk's ledger rows; each goes to the address its token was signed for."""
    pairs = (
        func.unnest(
            bindparam("ids", [user_id for user_id, _ in users], type_=ARRAY(BigInteger)),
            bindparam("emails", [email for _, email in users], type_=ARRAY(Text)),
            bindparam(
                "tokens",
                [make_token(config.key, user_id, email) for user_id, email in users],
                type_=ARRAY(Text),
            ),
        )
        .table_valued("user_id", "email", "token")
        .render_derived(name="chunk")
    )
    link = _text(config.token_prefix) + pairs.c.token
    list_unsubscribe = _text("<") + link + _text(">")
    if config.unsubscribe_mailto:
        mailto = f"mailto:{config.unsubscribe_mailto}?subject=unsubscribe%20"
        list_unsubscribe = list_unsubscribe + _text(", <" + mailto) + pairs.c.token + _text(">")
    static = campaign_context(campaign, config)
    context = func.jsonb_build_object(
        _text("username"),
        User.username,
        _text("unsubscribe_url"),
        link,
        *(part for key, value in static.items() for part in (_text(key), _text(value))),
    )
    headers = func.jsonb_build_object(
        _text("List-Unsubscribe"),
        list_unsubscribe,
        _text("List-Unsubscribe-Post"),
        _text("List-Unsubscribe=One-Click"),
        _text("List-Id"),
        _text(list_id(campaign, config.list_domain)),
    )
    rows = (
        select(
            _text(f"promotion:{run.id}:") + cast(User.id, Text),
            _text(PROMOTION_KIND),
            User.id,
            pairs.c.email,
            _text(PROMOTION_TEMPLATE),
            context,
            _text(campaign.subject),
            headers,
            cast(bindparam("run_id", run.id, type_=BigInteger), BigInteger),
        )
        .select_from(pairs)
        .join(User, User.id == cast(pairs.c.user_id, BigInteger))
        .where(*ELIGIBLE)
    )
    columns = [
        "idempotency_key",
        "kind",
        "user_id",
        "to_address",
        "template",
        "context",
        "subject",
        "headers",
        "promotion_run_id",
    ]
    return (
        insert(EmailMessage)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(EmailMessage.id)
    )


async def next_chunk(
    session: AsyncSession, run_id: int, campaign: Campaign, config: PromotionConfig
) -> Chunk | None:
    """Queue the next chunk of run ``run_id``; None once the run is finished. Never commits.

    The run row is locked first, so two walkers of one run take turns, chunk by chunk.
    """
    run = await session.get(PromotionRun, run_id, with_for_update=True, populate_existing=True)
    assert run is not None
    if run.finished_at is not None or run.paused_at is not None:
        return None  # finished, or paused by the circuit breaker (resumed by an operator)
    users = (
        await session.execute(
            select(User.id, User.email)
            .where(User.id > run.last_user_id, *ELIGIBLE)
            .order_by(User.id)
            .limit(config.chunk_size)
        )
    ).all()
    if not users:
        run.finished_at = datetime.now(UTC)
        return None
    rows = [(user_id, email) for user_id, email in users]
    new_ids = list((await session.scalars(_ledger_rows(run, campaign, config, rows))).all())
    if new_ids:
        await defer_delivery_async(session, new_ids, priority=BULK_PRIORITY)
    run.last_user_id = rows[-1][0]
    run.total_users += len(rows)
    run.queued += len(new_ids)
    if len(rows) < config.chunk_size:
        run.finished_at = datetime.now(UTC)  # a short read: nobody is left after the cursor
    return Chunk(run_id=run.id, campaign=campaign.name, users=len(rows), queued=len(new_ids))
