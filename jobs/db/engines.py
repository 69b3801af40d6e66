"""Engines and sessions; the connection URL (configured or embedded)."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from jobs.db.embedded import embedded_url
from jobs.db.liveness import ping_after_idle
from jobs.errors import DatabaseUnreachable
from jobs.settings import Settings


def database_url(settings: Settings) -> str:
    """The libpq URL to use: DATABASE_URL, or the embedded server when it is unset."""
    return settings.database_url or embedded_url(settings.JOBS_DATA_DIR / "postgres")


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` -> ``postgresql+psycopg://...`` (psycopg 3 driver)."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://")


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def create_database(url: str, name: str) -> str:
    """Database ``name`` on the server of ``url`` (created if missing); its URL."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseUnreachable(
            f"cannot create database {name!r} on PostgreSQL at {describe_server(url)}: {reason}"
        ) from None
    return with_database(url, name)


def describe_server(url: str) -> str:
    """``host:port`` (or the socket directory) of a URL, without credentials."""
    params = conninfo_to_dict(url)
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    return f"{host}:{port}"


def check_connection(url: str, timeout: int = 5) -> None:
    """Raise `DatabaseUnreachable` (naming host and port) unless ``url`` answers."""
    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = first_line.rpartition("failed: ")[2] or first_line
        raise DatabaseUnreachable(
            f"cannot connect to PostgreSQL at {describe_server(url)}: {reason}"
        ) from None


# An unreachable server fails a connection attempt after this long instead of
# hanging it (a /metrics scrape, a task body).
_CONNECT_ARGS = {"connect_timeout": 10}

_engines: dict[str, Engine] = {}
_async_engines: dict[str, AsyncEngine] = {}


def engine(url: str) -> Engine:
    """The process's sync engine for ``url`` (created once)."""
    if url not in _engines:
        _engines[url] = create_engine(
            sqlalchemy_url(url), pool_pre_ping=True, connect_args=_CONNECT_ARGS
        )
    return _engines[url]


def async_engine(url: str) -> AsyncEngine:
    """The process's async engine for ``url`` (created once; the worker's, the web
    app's): its connections are pinged only after they sat idle (`jobs.db.liveness`)."""
    if url not in _async_engines:
        created = create_async_engine(sqlalchemy_url(url), connect_args=_CONNECT_ARGS)
        ping_after_idle(created)
        _async_engines[url] = created
    return _async_engines[url]


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine(url), expire_on_commit=False)


def async_session_factory(url: str) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(async_engine(url), expire_on_commit=False)


async def dispose_engines() -> None:
    """Close every pooled connection (worker shutdown, tests)."""
    while _engines:
        _engines.popitem()[1].dispose()
    while _async_engines:
        await _async_engines.popitem()[1].dispose()
