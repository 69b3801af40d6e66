"""Proving pooled connections alive only when they may have gone stale.

SQLAlchemy's ``pool_pre_ping`` and psycopg_pool's ``check`` (which procrastinate
turns on) both spend a round trip on every checkout. A worker checks out a
connection three times per job (fetch, delivery, finish): at one email per job,
three of its fifteen round trips. Neither library offers "only after the
connection sat idle", so this module does it: a connection handed out less than
`CHECK_AFTER_IDLE` seconds ago worked then and goes out unchecked; an older one
(or a new one) is pinged first, and a dead one is replaced as before. A server
that dies within that window fails the statement instead, which the worker's
outage handling and the task's retry already cover (`jobs.worker.outage`).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import psycopg
import psycopg_pool
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

CHECK_AFTER_IDLE = 1.0  # seconds since a connection was last handed out
_HANDED_OUT = "jobs_handed_out_at"


def _recent(last: float | None, now: float) -> bool:
    return last is not None and now - last < CHECK_AFTER_IDLE


def ping_after_idle(engine: AsyncEngine) -> None:
    """Ping ``engine``'s connections at checkout only after `CHECK_AFTER_IDLE` seconds
    (use instead of ``pool_pre_ping``)."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        now = time.monotonic()
        last = record.info.get(_HANDED_OUT)  # `info` is per DBAPI connection
        record.info[_HANDED_OUT] = now
        if _recent(last, now):
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces it and tries again
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc
        if not alive:
            raise DisconnectionError("pooled connection is dead")


class CheckAfterIdle:
    """psycopg_pool's ``check`` callback, run at every checkout: one empty query, but
    only for a connection not handed out within `CHECK_AFTER_IDLE` seconds."""

    def __init__(self) -> None:
        self._handed_out: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        now = time.monotonic()
        last = self._handed_out.get(conn)
        self._handed_out[conn] = now
        if not _recent(last, now):
            await psycopg_pool.AsyncConnectionPool.check_connection(conn)
