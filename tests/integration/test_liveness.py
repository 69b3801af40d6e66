"""Pooled connections the server dropped while they sat idle are replaced, unseen by the
caller: the worker's SQLAlchemy engine and procrastinate's pool (`jobs.db.liveness`)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from jobs.app import make_connector
from jobs.db import async_engine, liveness


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _engine_pid(url: str) -> int:
    async with async_engine(url).connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_the_worker_engine_replaces_a_connection_dropped_while_idle(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _engine_pid(database_url)
    _terminate(database_url, first)
    monkeypatch.setattr(liveness, "CHECK_AFTER_IDLE", 0.0)  # it has sat idle long enough
    second = await _engine_pid(database_url)
    assert second != first


async def test_procrastinates_pool_replaces_a_connection_dropped_while_idle(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector: Any = make_connector(database_url)
    await connector.open_async()
    try:
        before = await connector.execute_query_one_async("SELECT pg_backend_pid() AS pid")
        async with connector.pool.connection() as connection:
            assert connection.autocommit  # one round trip per procrastinate statement
        _terminate(database_url, before["pid"])
        monkeypatch.setattr(liveness, "CHECK_AFTER_IDLE", 0.0)
        after = await connector.execute_query_one_async("SELECT pg_backend_pid() AS pid")
        assert after["pid"] != before["pid"]
    finally:
        await connector.close_async()
