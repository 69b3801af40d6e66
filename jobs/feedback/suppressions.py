"""The suppression list: addresses never mailed again, and for which mail.

Hard bounces and manual entries stop every email to the address; complaints
and unsubscribes stop promotions only (a password reset still goes to someone
who marked a newsletter as spam). An address is stored lower-cased and
stripped, so the comparison ignores case.

A 5xx refusal during delivery suppresses the address only when its enhanced
status says the mailbox or domain does not exist (5.1.1, 5.1.2, 5.1.3, 5.1.10):
a policy refusal (5.7.x) says nothing about the address.

When an address is suppressed again for another reason, the one that stops
more mail is kept (manual > hard bounce > complaint > unsubscribe), unless an
operator sets the reason explicitly (`jobs suppressions add --reason`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Insert, Select, case, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.dml import ReturningDelete

from jobs.errors import InvalidEmailAddress
from jobs.models import Suppression, SuppressionReason

_RANK = {
    SuppressionReason.UNSUBSCRIBE: 0,
    SuppressionReason.COMPLAINT: 1,
    SuppressionReason.HARD_BOUNCE: 2,
    SuppressionReason.MANUAL: 3,
}


def normalize(address: str) -> str:
    """``address`` as the list stores it: no brackets or spaces, lower case."""
    value = address.strip().strip("<>").strip().lower()
    if value.count("@") != 1 or value.startswith("@") or value.endswith("@") or " " in value:
        raise InvalidEmailAddress(f"not an email address: {address!r}")
    return value


def parse_reason(value: str) -> SuppressionReason:
    try:
        return SuppressionReason(value)
    except ValueError:
        names = ", ".join(r.value for r in SuppressionReason)
        raise ValueError(f"unknown suppression reason {value!r} (one of {names})") from None


def _rank(column: ColumnElement[Any] | InstrumentedAttribute[Any]) -> ColumnElement[int]:
    return case(*((column == reason.value, rank) for reason, rank in _RANK.items()), else_=-1)


def suppress(
    address: str, reason: SuppressionReason, source: str, *, override: bool = False
) -> Insert:
    """Upsert: add ``address`` or count one more event for it (see the module docstring)."""
    statement = insert(Suppression).values(address=normalize(address), reason=reason, source=source)
    excluded = statement.excluded
    keep_stronger = case(
        (_rank(excluded.reason) > _rank(Suppression.reason), excluded.reason),
        else_=Suppression.reason,
    )
    return statement.on_conflict_do_update(
        index_elements=[Suppression.address],
        set_={
            "reason": excluded.reason if override else keep_stronger,
            "source": excluded.source,
            "last_event_at": func.now(),
            "events": Suppression.events + 1,
        },
    )


_NO_SUCH_MAILBOX = re.compile(r"(?<![\d.])5\.1\.(1|2|3|10)(?![\d.])")


async def suppress_refused(session: AsyncSession, refused: Sequence[tuple[str, str]]) -> int:
    """Suppress the (address, server reply) pairs whose reply says the mailbox does
    not exist; how many. One statement per such address; never commits."""
    done = 0
    for address, reply in refused:
        if _NO_SUCH_MAILBOX.search(reply):
            try:
                statement = suppress(address, SuppressionReason.HARD_BOUNCE, f"smtp: {reply[:200]}")
            except InvalidEmailAddress:
                continue
            await session.execute(statement)
            done += 1
    return done


def remove(address: str, reason: SuppressionReason | None = None) -> ReturningDelete[tuple[str]]:
    """Take ``address`` off the list (only if listed for ``reason``, when given)."""
    statement = delete(Suppression).where(Suppression.address == normalize(address))
    if reason is not None:
        statement = statement.where(Suppression.reason == reason)
    return statement.returning(Suppression.address)


def listing(limit: int | None = None) -> Select[Suppression]:
    query = select(Suppression).order_by(Suppression.last_event_at.desc(), Suppression.address)
    return query if limit is None else query.limit(limit)


def describe(rows: Sequence[Suppression]) -> list[str]:
    """One line per entry, for the CLI."""

    def when(value: datetime) -> str:
        return value.isoformat(timespec="seconds")

    return [
        f"{row.address:<40} {row.reason.value:<12} {row.events:>5}  "
        f"{when(row.first_event_at)} .. {when(row.last_event_at)}  {row.source}"
        for row in rows
    ]
