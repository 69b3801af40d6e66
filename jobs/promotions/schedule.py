"""Promotion periods: the ticks of PROMOTION_CRON (UTC), computed by croniter.

procrastinate's periodic deferrer passes the tick it fires for as ``timestamp``;
`latest_tick` finds the same instant for a manual run, so both name one period.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from croniter import croniter


def latest_tick(cron: str, now: datetime) -> datetime:
    """The latest tick of ``cron`` at or before ``now`` (UTC, whole seconds)."""
    whole = math.floor(now.timestamp())
    # get_prev is strictly before its start; ticks fall on whole seconds.
    previous = croniter(cron).get_prev(ret_type=float, start_time=whole + 1)
    return datetime.fromtimestamp(round(previous), UTC)


def period_of(timestamp: int) -> datetime:
    """The period a periodic job's ``timestamp`` (epoch seconds) names."""
    return datetime.fromtimestamp(timestamp, UTC)
