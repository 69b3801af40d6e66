"""A transaction's BEGIN goes with its first statement (`jobs.db.begin`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import ARRAY, BigInteger, Integer, bindparam, func, literal, select, text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from jobs.db import async_engine
from jobs.db.begin import execute_first

# A constant with a '%' (escaped for the driver), a parameter SQLAlchemy converts
# (a tuple becomes an array) and one it leaves alone.
STATEMENT = select(
    literal("100% sure"),
    func.cardinality(bindparam("ids", type_=ARRAY(BigInteger))),
    literal(10, Integer) / bindparam("divisor", type_=Integer),
)
PARAMS = {"ids": (1, 2, 3), "divisor": 5}


async def _driver(session: AsyncSession) -> Any:
    return (await (await session.connection()).get_raw_connection()).driver_connection


def _messages(trace: Path) -> list[tuple[str, str]]:
    """(direction, message) of a libpq trace: F from the client, B from the server."""
    found = []
    for line in trace.read_text().splitlines():
        direction, _length, message, *_ = line.split("\t")
        found.append((direction, message.split(" ")[0]))
    return found


async def test_on_autocommit_it_opens_the_transaction_in_the_same_round_trip(
    database_url: str, tmp_path: Path
) -> None:
    trace = tmp_path / "libpq.trace"
    engine = async_engine(database_url)
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(bind=connection) as session:
            async with session.begin():
                driver = await _driver(session)
                with trace.open("w") as out:
                    driver.pgconn.trace(out.fileno())
                    flags = pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE
                    driver.pgconn.set_trace_flags(flags)
                    rows = await execute_first(session, STATEMENT, PARAMS)
                    driver.pgconn.untrace()
                assert rows == [("100% sure", 3, 2)]
                # Later statements belong to the transaction the first one opened.
                await session.execute(text("CREATE TABLE made_in_it (x int)"))
                assert driver.info.transaction_status == pq.TransactionStatus.INTRANS
                await session.rollback()
            assert driver.info.transaction_status == pq.TransactionStatus.IDLE
            exists = await session.scalar(text("SELECT to_regclass('made_in_it') IS NOT NULL"))
            assert exists is False  # rolled back with the transaction
    async with engine.connect() as again:  # the same pooled connection, back to transactions
        returned = (await again.get_raw_connection()).driver_connection
        assert isinstance(returned, psycopg.AsyncConnection)
        assert returned is driver
        assert returned.autocommit is False
    messages = _messages(trace)
    first_answer = next(n for n, (direction, _) in enumerate(messages) if direction == "B")
    sent = [message for direction, message in messages[:first_answer]]
    # Everything went out before the first answer came back: BEGIN, the statement, Sync.
    assert sent.count("Execute") == 2, messages
    assert "Sync" in sent, messages
    assert all(direction == "B" for direction, _ in messages[first_answer:]), messages


async def test_inside_a_transaction_it_is_a_plain_statement_with_the_same_rows(
    database_url: str,
) -> None:
    async with AsyncSession(async_engine(database_url)) as session, session.begin():
        await session.execute(text("SELECT 1"))
        rows = await execute_first(session, STATEMENT, PARAMS)
        assert rows == [tuple(row) for row in await session.execute(STATEMENT, PARAMS)]
        assert rows == [("100% sure", 3, 2)]


async def test_a_failing_statement_raises_sqlalchemys_error_and_the_session_goes_on(
    database_url: str,
) -> None:
    async with AsyncSession(async_engine(database_url)) as session:
        with pytest.raises(DataError, match="division by zero"):
            async with session.begin():
                await execute_first(session, STATEMENT, {**PARAMS, "divisor": 0})
        async with session.begin():
            assert await execute_first(session, STATEMENT, PARAMS) == [("100% sure", 3, 2)]


async def test_a_dead_connection_is_dropped_and_the_next_one_works(
    engine_with_dead_connection: AsyncEngine,
) -> None:
    engine = engine_with_dead_connection
    async with AsyncSession(engine) as session:
        with pytest.raises(OperationalError):
            async with session.begin():
                await execute_first(session, STATEMENT, PARAMS)
    async with AsyncSession(engine) as session, session.begin():
        assert await execute_first(session, STATEMENT, PARAMS) == [("100% sure", 3, 2)]
