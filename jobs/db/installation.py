"""This database's installation id: random, made once by its migration, mixed into Message-IDs.

Two databases (production and staging, two applications on one domain) have
different ids, so their Message-IDs never collide; one database always gives
one email the same Message-ID, retry after retry.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from jobs.errors import JobsError
from jobs.models import Installation

_QUERY = select(Installation.installation_id).where(Installation.id == 1)
_cache: dict[str, str] = {}


def _found(value: str | None) -> str:
    if not value:
        raise JobsError("the database has no installation id: run `jobs migrate`")
    return value


def installation_id(session: Session) -> str:
    """The id, read on ``session``."""
    return _found(session.scalar(_QUERY))


async def installation_id_async(session: AsyncSession, url: str) -> str:
    """The id of the database at ``url``, read once per process on ``session``."""
    cached = _cache.get(url)
    if cached is None:
        cached = _cache[url] = _found(await session.scalar(_QUERY))
    return cached
