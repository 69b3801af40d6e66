"""Statements on a session's own psycopg connection, inside its transaction.

SQLAlchemy's psycopg adapter sends every parameter in text form. For a large
array that costs the client more than the statement's round trip: psycopg
writes a timestamp array as text at a few microseconds an element, about ten
times its binary form, and text arrays are quoted and escaped element by
element. A statement whose parameters are such arrays goes through the driver
with ``%b`` placeholders instead. A driver error comes back as the
`sqlalchemy.exc.DBAPIError` SQLAlchemy would raise, and a connection that broke
is dropped from SQLAlchemy's pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def driver_of(session: AsyncSession) -> tuple[AsyncConnection, psycopg.AsyncConnection]:
    """The session's connection (its transaction begun) and the psycopg one under it."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)  # the psycopg dialect's
    return connection, driver


@contextlib.asynccontextmanager
async def sqlalchemy_errors(
    connection: AsyncConnection, driver: psycopg.AsyncConnection, sql: str, params: Any
) -> AsyncIterator[None]:
    """Raise a driver error as SQLAlchemy's; drop the connection if it broke."""
    try:
        yield
    except psycopg.Error as exc:
        if driver.broken:
            await connection.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


async def execute(session: AsyncSession, sql: str, params: Mapping[str, Any]) -> int:
    """Run ``sql`` (psycopg's placeholders) in the session's transaction; the rows it changed."""
    connection, driver = await driver_of(session)
    async with sqlalchemy_errors(connection, driver, sql, params):
        cursor = await driver.execute(sql, params)
    return cursor.rowcount
