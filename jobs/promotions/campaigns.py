"""Campaigns: what a promotion says. ``jobs campaigns list|show|add|edit|enable|disable|delete``.

A new campaign is disabled until enabled: the next PROMOTION_CRON tick would
otherwise mail everyone before anyone has looked at it (`jobs preview`,
`jobs send-test`).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from jobs.errors import InvalidCampaign, UnknownCampaign
from jobs.mail.message import check_subject
from jobs.models import Campaign, PromotionRun

# Characters a link path keeps as they are; anything else (spaces, non-ASCII, quotes,
# angle brackets) is percent-encoded, and existing %XX escapes stay.
_URL_SAFE = "/?&=#%:@!$'()*+,;~-._"


def link_url(frontend_url: str, link_path: str) -> str:
    """The campaign's link: FRONTEND_URL + its path, URL-encoded."""
    return frontend_url + quote(link_path, safe=_URL_SAFE)


def list_campaigns(session: Session) -> Sequence[Campaign]:
    return session.scalars(select(Campaign).order_by(Campaign.name)).all()


def get_campaign(session: Session, name: str) -> Campaign:
    campaign = session.scalars(select(Campaign).where(Campaign.name == name)).one_or_none()
    if campaign is None:
        known = ", ".join(c.name for c in list_campaigns(session)) or "none"
        raise UnknownCampaign(f"no campaign named {name!r} (campaigns: {known})")
    return campaign


def _check(name: str, subject: str, title: str, content: str, link_path: str) -> None:
    for label, value in (("name", name), ("subject", subject), ("title", title)):
        if not value.strip():
            raise InvalidCampaign(f"campaign {label} is empty")
    if not content.strip():
        raise InvalidCampaign("campaign content is empty")
    try:
        check_subject(subject)
    except ValueError as exc:
        raise InvalidCampaign(f"campaign subject: {exc}") from None
    if not link_path.startswith("/") or any(c.isspace() or ord(c) < 32 for c in link_path):
        raise InvalidCampaign(
            f"link path {link_path!r} must start with '/' and contain no spaces "
            "(it is appended to FRONTEND_URL)"
        )


def add_campaign(
    session: Session,
    *,
    name: str,
    subject: str,
    title: str,
    content: str,
    link_path: str,
    active: bool = False,
) -> Campaign:
    """Insert a campaign; never commits. A taken name raises `InvalidCampaign`."""
    _check(name, subject, title, content, link_path)
    statement = (
        insert(Campaign)
        .values(
            name=name.strip(),
            subject=subject,
            title=title,
            content=content,
            link_path=link_path,
            active=active,
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Campaign)
    )
    campaign = session.scalars(statement).one_or_none()
    if campaign is None:
        raise InvalidCampaign(f"a campaign named {name.strip()!r} exists already")
    return campaign


def set_active(session: Session, name: str, active: bool) -> Campaign:
    """Enable or disable a campaign by name; never commits."""
    campaign = get_campaign(session, name)
    campaign.active = active
    return campaign


def edit_campaign(
    session: Session,
    name: str,
    *,
    subject: str | None = None,
    title: str | None = None,
    content: str | None = None,
    link_path: str | None = None,
) -> Campaign:
    """Change the given fields of a campaign (checked like `add_campaign`); never commits.

    Runs already queued keep what they queued; the next run uses the new text.
    """
    campaign = get_campaign(session, name)
    subject = campaign.subject if subject is None else subject
    title = campaign.title if title is None else title
    content = campaign.content if content is None else content
    link_path = campaign.link_path if link_path is None else link_path
    _check(campaign.name, subject, title, content, link_path)
    campaign.subject, campaign.title, campaign.content = subject, title, content
    campaign.link_path = link_path
    return campaign


def run_count(session: Session, campaign: Campaign) -> int:
    """How many promotion runs the campaign has had."""
    query = select(func.count()).where(PromotionRun.campaign_id == campaign.id)
    return int(session.scalar(query) or 0)


def delete_campaign(session: Session, name: str) -> None:
    """Delete a campaign that never ran; never commits.

    One that ran keeps its runs (their emails point at them, and who
    unsubscribed from what depends on it): disable it instead.
    """
    campaign = get_campaign(session, name)
    runs = run_count(session, campaign)
    if runs:
        raise InvalidCampaign(
            f"campaign {name!r} has {runs} run(s) and its emails refer to them: "
            f"disable it instead (`jobs campaigns disable {name}`)"
        )
    session.delete(campaign)
    session.flush()
