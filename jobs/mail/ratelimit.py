"""A global send budget (``MAIL_RATE_LIMIT`` messages/second) kept in Postgres.

Every worker process on every machine reserves send slots from one row of
``mail_rate_limits`` per SMTP server: one atomic upsert moves the row's
``next_free`` forward by ``n / rate`` seconds and tells the caller when its
first slot starts. Slot ``i`` is then ``i / rate`` seconds later. Sending waits
for its slot; the limit never drops or fails a message.

Only time *differences* measured by the database clock are used, so clock
skew between worker machines does not matter.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import Interval, bindparam, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.models import MailRateLimit


class Slots:
    """Send times for ``count`` messages, in the event loop's clock."""

    def __init__(self, start: float, interval: float, count: int) -> None:
        self.start = start
        self.interval = interval
        self.count = count

    async def wait(self, index: int) -> None:
        """Sleep until slot ``index`` (0-based) may send."""
        delay = self.start + index * self.interval - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)


class Unlimited(Slots):
    def __init__(self) -> None:
        super().__init__(0.0, 0.0, 0)

    async def wait(self, index: int) -> None:
        return None


class RateLimiter:
    """Reserves slots for ``name`` (the SMTP server) at ``rate`` messages/second.

    The reservation runs in its own autocommitted statement, never in the
    caller's transaction: it must be visible to every other worker at once.
    """

    def __init__(self, engine: AsyncEngine, rate: float | None, name: str) -> None:
        self.engine = engine
        self.rate = rate
        self.name = name

    async def reserve(self, count: int) -> Slots:
        """Slots for ``count`` messages, after everything reserved before (one round trip)."""
        if self.rate is None or count <= 0:
            return Unlimited()
        interval = 1.0 / self.rate
        span = bindparam("span", timedelta(seconds=count * interval), type_=Interval)
        now = func.clock_timestamp()
        statement = (
            insert(MailRateLimit)
            .values(name=self.name, next_free=now + span)
            .on_conflict_do_update(
                index_elements=[MailRateLimit.name],
                set_={"next_free": func.greatest(MailRateLimit.next_free, now) + span},
            )
            .returning(func.extract("epoch", MailRateLimit.next_free - now))
        )
        async with self.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            end_in = float((await autocommit.execute(statement)).scalar_one())
        start = asyncio.get_running_loop().time() + end_in - count * interval
        return Slots(start, interval, count)
