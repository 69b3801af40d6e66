"""A transaction's BEGIN and its first statement in one round trip.

psycopg opens a transaction by sending BEGIN on its own and waiting for the
answer before it sends the first statement (in pipeline mode too): two round
trips where one would do. On an idle worker the database's backend sleeps
between jobs, and each round trip that wakes it costs about half a millisecond,
which the delivery of a password reset pays before anything is sent. On a
connection in autocommit psycopg sends no BEGIN, so `execute_first` sends its
own, in pipeline mode with the statement and a Sync, and reads every answer at
once; the transaction it opens is the server's, which psycopg's commit and
rollback end as any other.

SQLAlchemy's psycopg adapter reads a statement's rows as soon as it is sent,
which pipeline mode does not allow, so this one statement goes through the
driver's own cursor. SQLAlchemy still writes the SQL, once per statement and
dialect: the statement's constants inline, its parameters as the driver's
placeholders, their values converted by SQLAlchemy's own bind processors. A
driver error comes back as SQLAlchemy's (`jobs.db.driver`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from psycopg import pq
from sqlalchemy import BindParameter, Select, literal_column
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.sql.visitors import replacement_traverse

from jobs.db.driver import driver_of, sqlalchemy_errors


@dataclass(frozen=True)
class DriverStatement:
    """A statement as psycopg takes it: constants inline, ``%(name)s`` for each
    parameter left to the caller (cast to its SQL type when it has one)."""

    sql: str
    processors: Mapping[str, Callable[[Any], Any]]  # SQLAlchemy's conversions of values

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        converted = dict(values)
        for name, process in self.processors.items():
            converted[name] = process(converted[name])
        return converted


@cache
def driver_statement(statement: Select[Any], dialect: Dialect) -> DriverStatement:
    """``statement`` compiled by SQLAlchemy for the driver of ``dialect``."""
    placeholders: dict[str, str] = {}
    processors: dict[str, Callable[[Any], Any]] = {}

    def placeholder(element: Any) -> Any:
        if not isinstance(element, BindParameter) or not element.required:
            return None  # a constant: rendered inline
        token = f"__jobs_parameter_{len(placeholders)}__"
        cast = "" if isinstance(element.type, NullType) else "::" + element.type.compile(dialect)
        placeholders[token] = f"%({element.key})s{cast}"
        process = element.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[element.key] = process
        return literal_column(token, element.type)

    # A Select is traversable: the stubs' overloads only name its base classes.
    replaced: Any = replacement_traverse(statement, {}, placeholder)  # type: ignore[call-overload]
    sql = str(replaced.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    for token, text in placeholders.items():
        sql = sql.replace(token, text)
    return DriverStatement(sql, processors)


async def execute_first(
    session: AsyncSession, statement: Select[Any], params: Mapping[str, Any]
) -> Sequence[tuple[Any, ...]]:
    """The rows of ``statement``, run on ``session`` through the driver.

    On a connection in AUTOCOMMIT (SQLAlchemy's ``isolation_level``) with no
    transaction open, this statement opens one: BEGIN and the statement go in one
    round trip, and the session's next statements and its commit or rollback
    belong to that transaction (psycopg sends COMMIT and ROLLBACK whenever the
    server is in one). Otherwise it is one statement of the current transaction
    (psycopg opens it, with a round trip of its own, when none is open).
    """
    connection, driver = await driver_of(session)
    prepared = driver_statement(statement, connection.dialect)
    values = prepared.params(params)
    opens = driver.autocommit and driver.info.transaction_status == pq.TransactionStatus.IDLE
    async with sqlalchemy_errors(connection, driver, prepared.sql, values):
        async with driver.pipeline():
            if opens:
                await driver.execute(b"BEGIN")
            cursor = driver.cursor()
            await cursor.execute(prepared.sql, values)
        rows: list[tuple[Any, ...]] = await cursor.fetchall()
    return rows
