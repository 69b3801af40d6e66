"""Real PostgreSQL (a migrated template cloned per test) and a real SMTP peer.

Tests live in tiers: ``tests/unit`` (no services), ``tests/integration`` (real
PostgreSQL, SMTP peer, Redis) and ``tests/acceptance`` (spawned `jobs`
processes); each test is marked with its tier (``pytest -m unit``) and runs
under pytest-timeout, longer for the acceptance tier.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import hypothesis
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs import db
from jobs.app import app
from jobs.db import liveness, session_factory, with_database
from jobs.db.embedded import embedded_url
from jobs.db.migrations import migrate
from jobs.dev.sink import Sink
from jobs.mail.enqueue import defer_delivery
from jobs.models import EmailMessage
from jobs.settings import get_settings, load_settings
from jobs.tasks import BULK_PRIORITY
from tests.smtp import FaultyHandler

ROOT = Path(__file__).resolve().parent.parent

# Promotions: no worker in the test process defers the daily promotion
# (a run between 09:00 and 09:10 UTC would otherwise mail every test's users);
# the tests that want the schedule pass it to their worker subprocesses.
os.environ["PROMOTION_SCHEDULE_ENABLED"] = "false"
# Operations: worker subprocesses serve no /metrics unless a test asks
# for a port (several workers at once would otherwise fight over 9464).
os.environ["WORKER_HTTP_PORT"] = "0"
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"

# CI draws the same hypothesis examples on every run (HYPOTHESIS_PROFILE=ci, set by
# .ci/run), so a red build is about the change, not the draw; other runs keep exploring.
hypothesis.settings.register_profile("ci", derandomize=True)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TIERS = ("unit", "integration", "acceptance")
ACCEPTANCE_TIMEOUT = 300  # seconds; the other tiers take pytest-timeout's default


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = next((t for t in TIERS if f"{os.sep}{t}{os.sep}" in str(item.path)), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "acceptance" and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(ACCEPTANCE_TIMEOUT))


def set_env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """Set environment variables for one test and re-read the settings."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``env(NAME="value", ...)``: settings for this test only (the cache is cleared)."""
    yield lambda **variables: set_env(monkeypatch, **variables)
    get_settings.cache_clear()


def _server_url() -> str:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        url = load_settings(DATABASE_URL=configured).database_url
        assert url is not None
        return url
    return embedded_url(ROOT / ".data" / "test-postgres")


def _admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def server_url() -> str:
    """A database on the test server (DATABASE_URL, else the embedded one)."""
    url = _server_url()
    db.check_connection(url)
    return url


@pytest.fixture(scope="session")
def template_url(server_url: str) -> Iterator[str]:
    """A database migrated to head once per run; tests get clones of it."""
    name = f"jobs_tpl_{RUN_ID}"
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}"')
    _admin(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    migrate(url)
    yield url
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(
    server_url: str, template_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[str]:
    """A fresh clone of the migrated template; DATABASE_URL points at it."""
    name = f"jobs_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    template = urlsplit(template_url).path.lstrip("/")
    _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = with_database(server_url, name)
    set_env(monkeypatch, DATABASE_URL=url)
    try:
        yield url
    finally:
        await db.dispose_engines()
        get_settings.cache_clear()
        _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine_with_dead_connection(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncEngine:
    """The process's engine for ``database_url``, whose one pooled connection the server
    has terminated and which hands it out unchecked: its next use fails."""
    monkeypatch.setattr(liveness, "CHECK_AFTER_IDLE", 3600.0)
    engine = db.async_engine(database_url)
    async with engine.connect() as connection:  # the pool's one connection, checked once
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return engine


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sink]:
    """A real SMTP server on loopback; MAIL_SERVER/MAIL_PORT point at it."""
    with Sink(FaultyHandler()) as sink:
        set_env(monkeypatch, MAIL_SERVER=sink.host, MAIL_PORT=str(sink.port))
        yield sink
    get_settings.cache_clear()


def faults(sink: Sink) -> FaultyHandler:
    assert isinstance(sink.handler, FaultyHandler)
    return sink.handler


@contextlib.contextmanager
def _no_periodic_deferrer() -> Iterator[None]:
    """A drained worker defers no periodic job (maintenance, promotions), so a test
    sees exactly the jobs it made; tests of periodic tasks run real subprocesses."""
    registry = app.periodic_registry.periodic_tasks
    saved = dict(registry)
    registry.clear()
    try:
        yield
    finally:
        registry.update(saved)


async def drain(*, fast_forward: int = 10, concurrency: int = 4) -> None:
    """Run a real worker until no job is due; then make jobs waiting for a
    retry due now (time travel) and go again, at most ``fast_forward`` times.
    A job left waiting by a run (released by a job that took it, after the
    worker's last fetch) also means another run."""
    url = db.database_url(get_settings())
    for _ in range(fast_forward + 1):
        async with app.open_async():
            with _no_periodic_deferrer():
                await app.run_worker_async(
                    wait=False,
                    concurrency=concurrency,
                    install_signal_handlers=False,
                    listen_notify=False,
                )
        with psycopg.connect(url, autocommit=True) as conn:
            moved = conn.execute(
                "UPDATE procrastinate_jobs SET scheduled_at = now() "
                "WHERE status = 'todo' AND scheduled_at > now()"
            ).rowcount
            row = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
            waiting = row.fetchone()
        if not moved and waiting is not None and waiting[0] == 0:
            return


def queue_chunk(
    url: str, n: int, *, offset: int = 0, key: str = "test", priority: int = BULK_PRIORITY
) -> tuple[list[int], int]:
    """``n`` welcome ledger rows (``user<i>@example.com``) and ONE delivery job for
    all of them, as a promotion chunk is queued: (their ids, the job id)."""
    with session_factory(url)() as session, session.begin():
        rows = [
            EmailMessage(
                idempotency_key=f"{key}:{i}",
                kind="test",
                to_address=f"user{i}@example.com",
                template="welcome",
                context={"username": f"user{i}"},
            )
            for i in range(offset, offset + n)
        ]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
        return ids, defer_delivery(session, ids, priority=priority)


def count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


# Results -------------------------------------------------------------
pytest_plugins = ["tests.redis_server"]  # the `redis` fixture (a real Redis, unique key prefix)


@pytest.fixture(autouse=True)
def _no_redis_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run without the Redis cache (an empty value also hides a .env's);
    the cache tests turn it on with the `redis` fixture of tests/redis_server.py,
    under a key prefix of their own."""
    set_env(monkeypatch, REDIS_URL="")
