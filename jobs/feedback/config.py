"""Deliverability settings as plain values, taken from `Settings` once at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from jobs.errors import ConfigError
from jobs.feedback.breaker import Thresholds
from jobs.feedback.events import Policy
from jobs.feedback.verp import verp_key
from jobs.settings import Settings


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(
        max_bounce_rate=settings.PROMOTION_MAX_BOUNCE_RATE,
        max_complaint_rate=settings.PROMOTION_MAX_COMPLAINT_RATE,
        min_sample=settings.PROMOTION_BREAKER_MIN_SAMPLE,
    )


def policy(settings: Settings) -> Policy:
    return Policy(
        soft_bounce_limit=settings.SOFT_BOUNCE_LIMIT,
        soft_bounce_window=timedelta(hours=settings.SOFT_BOUNCE_WINDOW_HOURS),
        thresholds=thresholds(settings),
    )


@dataclass(frozen=True)
class Verp:
    """How to write and read VERP return paths (MAIL_BOUNCE_DOMAIN set)."""

    domain: str
    key: bytes = field(repr=False)


def verp(settings: Settings) -> Verp | None:
    """The VERP settings, or None without MAIL_BOUNCE_DOMAIN; `ConfigError` when no
    signing key is available (the same rule as unsubscribe links)."""
    if settings.MAIL_BOUNCE_DOMAIN is None:
        return None
    from jobs.promotions.unsubscribe import signing_key

    if settings.SECRET_KEY is None and settings.DATABASE_URL is not None:
        raise ConfigError(
            "SECRET_KEY is not set: MAIL_BOUNCE_DOMAIN's return paths are signed with it, "
            "and every worker and `jobs inbound` must share it; set it to at least 16 "
            "random characters"
        )
    return Verp(settings.MAIL_BOUNCE_DOMAIN, verp_key(signing_key(settings)))
