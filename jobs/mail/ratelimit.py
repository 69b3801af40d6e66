"""A global send budget (``MAIL_RATE_LIMIT`` messages/second) kept in Postgres.

Every worker process on every machine reserves send slots from one row of
``mail_rate_limits`` per SMTP server: one atomic upsert moves the row's
``next_free`` forward by ``n / rate`` seconds and tells the caller when its
first slot starts. Slot ``i`` is then ``i / rate`` seconds later. Sending waits
for its slot; the limit never drops or fails a message.

Only time *differences* measured by the database clock are used, so clock
skew between worker machines does not matter.

Per-domain budgets (``MAIL_DOMAIN_RATE_LIMITS``) are rows of the same table,
named ``domain:<domain>``; a message to such a domain waits for its global slot
and for its domain's. When the receiver asks to slow down (421/451 4.7.x, 454),
`DomainLimits.slow_down` makes the domain's budget `SLOW_FACTOR` times smaller
for `SLOW_DOWN_SECONDS` (``slowed_until``), for every worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import timedelta

from sqlalchemy import Interval, bindparam, case, func, literal
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
        slowed = case((MailRateLimit.slowed_until > now, SLOW_FACTOR), else_=literal(1))
        statement = (
            insert(MailRateLimit)
            .values(name=self.name, next_free=now + span)
            .on_conflict_do_update(
                index_elements=[MailRateLimit.name],
                set_={
                    "next_free": func.greatest(MailRateLimit.next_free, now)
                    + span.op("*", return_type=Interval)(slowed)
                },
            )
            .returning(func.extract("epoch", MailRateLimit.next_free - now), slowed)
        )
        async with self.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            end_in, factor = (await autocommit.execute(statement)).one()
        interval *= float(factor)
        start = asyncio.get_running_loop().time() + float(end_in) - count * interval
        return Slots(start, interval, count)


SLOW_FACTOR = 4  # a domain that asked to slow down gets a quarter of its budget ...
SLOW_DOWN_SECONDS = 300.0  # ... for this long


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


class DomainLimits:
    """Per-domain budgets for the domains in ``limits`` (domain -> messages/second)."""

    def __init__(self, engine: AsyncEngine, limits: Mapping[str, float]) -> None:
        self.engine = engine
        self.limits = dict(limits)

    def limited(self, address: str) -> bool:
        return domain_of(address) in self.limits

    async def reserve(self, addresses: Iterable[str]) -> list[Slots | None]:
        """For each address, its own domain slot (None: its domain is not limited);
        one reservation per limited domain of the batch."""
        addresses = list(addresses)
        wanted: dict[str, int] = {}
        for address in addresses:
            if self.limited(address):
                wanted[domain_of(address)] = wanted.get(domain_of(address), 0) + 1
        if not wanted:
            return [None] * len(addresses)
        reserved = {
            domain: await RateLimiter(self.engine, self.limits[domain], f"domain:{domain}").reserve(
                n
            )
            for domain, n in wanted.items()
        }
        taken = dict.fromkeys(wanted, 0)
        result: list[Slots | None] = []
        for address in addresses:
            domain = domain_of(address)
            if domain not in reserved:
                result.append(None)
                continue
            slots = reserved[domain]
            result.append(_Single(slots, taken[domain]))
            taken[domain] += 1
        return result

    async def slow_down(self, address: str, seconds: float = SLOW_DOWN_SECONDS) -> bool:
        """Lower the budget of ``address``'s domain for ``seconds``; False if it has none."""
        if not self.limited(address):
            return False
        now = func.clock_timestamp()
        until = now + bindparam("for", timedelta(seconds=seconds), type_=Interval)
        statement = (
            insert(MailRateLimit)
            .values(name=f"domain:{domain_of(address)}", next_free=now, slowed_until=until)
            .on_conflict_do_update(
                index_elements=[MailRateLimit.name], set_={"slowed_until": until}
            )
        )
        async with self.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(statement)
        return True


class _Single(Slots):
    """Slot ``index`` of a reservation, waited for as slot 0."""

    def __init__(self, slots: Slots, index: int) -> None:
        super().__init__(slots.start + index * slots.interval, slots.interval, 1)
