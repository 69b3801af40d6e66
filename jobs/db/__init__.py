"""PostgreSQL: where the connection URL comes from (``DATABASE_URL`` or the embedded
server), the process's engines and sessions, when pooled connections are checked
(`liveness`), statements sent through psycopg itself inside a session's transaction
(`driver`: binary arrays; `begin`: BEGIN with the first statement), the Alembic
migrations runner, and the database's installation id (`installation`, mixed into
Message-IDs).

``jobs.db.session_factory(url)`` gives a plain SQLAlchemy ``sessionmaker`` bound to a
psycopg 3 engine; the enqueue API works on it, or on any session of the caller's own.
"""

from __future__ import annotations

from jobs.db.engines import (
    async_engine,
    async_session_factory,
    check_connection,
    create_database,
    database_url,
    describe_server,
    dispose_engines,
    engine,
    session_factory,
    sqlalchemy_url,
    with_database,
)

__all__ = [
    "async_engine",
    "async_session_factory",
    "check_connection",
    "create_database",
    "database_url",
    "describe_server",
    "dispose_engines",
    "engine",
    "session_factory",
    "sqlalchemy_url",
    "with_database",
]
