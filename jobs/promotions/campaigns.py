"""Campaigns: what a promotion says. ``jobs campaigns list|add|enable|disable``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from jobs.errors import InvalidCampaign, UnknownCampaign
from jobs.mail.message import check_header
from jobs.models import Campaign


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
        check_header("Subject", subject)
    except ValueError as exc:
        raise InvalidCampaign(f"campaign subject: {exc}") from None
    if not link_path.startswith("/") or any(c.isspace() for c in link_path):
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
    active: bool = True,
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
