"""Statements through psycopg itself, in a session's transaction (`jobs.db.driver`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from jobs.db import async_engine, driver

# Binary arrays with NULLs in them, and an empty one.
_INSERT = """
INSERT INTO driver_probe (id, label, at)
SELECT * FROM unnest(%(ids)b::bigint[], %(labels)b::text[], %(at)b::timestamptz[])
       AS v(id, label, at)
 WHERE NOT (id = ANY(%(skip)b::bigint[]))
"""
_CREATE = "CREATE TABLE driver_probe (id bigint PRIMARY KEY, label text, at timestamptz)"
AT = datetime(2026, 12, 2, 9, 30, 0, 123456, tzinfo=UTC)


async def test_binary_arrays_with_nulls_land_in_the_sessions_transaction(database_url: str) -> None:
    async with AsyncSession(async_engine(database_url)) as session:
        async with session.begin():
            await session.execute(text(_CREATE))
            changed = await driver.execute(
                session,
                _INSERT,
                {
                    "ids": [1, 2, 3],
                    "labels": ['é, "quoted"', None, "x"],
                    "at": [AT, None, AT],
                    "skip": [],
                },
            )
            assert changed == 3
            rows = (await session.execute(text("SELECT * FROM driver_probe ORDER BY id"))).all()
            assert [tuple(r) for r in rows] == [
                (1, 'é, "quoted"', AT),
                (2, None, None),
                (3, "x", AT),
            ]
            await session.rollback()  # the driver's statement was the session's transaction's
        async with session.begin():  # the table went with it
            found = await session.execute(text("SELECT to_regclass('driver_probe')"))
            assert found.scalar_one() is None


async def test_a_failing_statement_raises_sqlalchemys_error_and_the_session_goes_on(
    database_url: str,
) -> None:
    params = {"ids": [1, 1], "labels": ["a", "b"], "at": [AT, AT], "skip": []}
    async with AsyncSession(async_engine(database_url)) as session:
        async with session.begin():
            await session.execute(text(_CREATE))
        with pytest.raises(IntegrityError, match="driver_probe_pkey"):
            async with session.begin():
                await driver.execute(session, _INSERT, params)
        async with session.begin():
            assert await driver.execute(session, _INSERT, {**params, "ids": [1, 2]}) == 2


async def test_a_dead_connection_is_dropped_and_the_next_one_works(
    engine_with_dead_connection: AsyncEngine,
) -> None:
    engine = engine_with_dead_connection
    async with AsyncSession(engine) as session:
        with pytest.raises(OperationalError):
            async with session.begin():
                await driver.execute(session, "SELECT 1", {})
    async with AsyncSession(engine) as session, session.begin():
        assert await driver.execute(session, "SELECT %(n)b::int", {"n": 1}) == 1
