"""The worker's sweeper sends just-committed transactional emails without fetching their
jobs (`jobs.worker.sweeper`); procrastinate's fetch runs whatever it leaves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from jobs.accounts import register_user
from jobs.app import app
from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.mail.journal import close_journal
from jobs.mail.pool import close_pool
from jobs.settings import get_settings
from jobs.tasks import TRANSACTIONAL_PRIORITY
from jobs.worker.sweeper import Sweeper
from tests.conftest import _no_periodic_deferrer, count, drain, faults, queue_chunk

JOBS_DONE = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
PATIENCE = 30.0  # seconds
SENT = "SELECT count(*) FROM email_messages WHERE status = 'sent'"


async def _until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(PATIENCE):
            while not condition():  # noqa: ASYNC110 - polls the database and the sink
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


@pytest.fixture(autouse=True)
async def _smtp_pool_closed() -> AsyncIterator[None]:
    """A sweep run here, not in a worker, leaves the SMTP pool and the journal open."""
    yield
    await close_journal()
    await close_pool()


def _sign_up(url: str, n: int, prefix: str = "user") -> None:
    for i in range(n):
        with session_factory(url)() as session, session.begin():
            register_user(session, email=f"{prefix}{i}@example.com", username=f"{prefix}{i}")


async def test_a_sweep_sends_waiting_welcome_emails_and_finishes_their_jobs(
    database_url: str, smtp: Sink
) -> None:
    _sign_up(database_url, 3)
    sweeper = Sweeper(get_settings(), database_url, after=lambda: None)
    assert await sweeper.sweep() is False  # nothing more waits
    assert sorted(m["To"] for m in faults(smtp).parsed()) == [
        "user0@example.com",
        "user1@example.com",
        "user2@example.com",
    ]
    assert count(database_url, SENT) == 3
    assert count(database_url, JOBS_DONE) == 3
    assert await sweeper.sweep() is False
    assert len(smtp.messages) == 3  # sent once


async def test_a_sweep_leaves_a_job_of_several_emails_to_procrastinate(
    database_url: str, smtp: Sink
) -> None:
    _, several = queue_chunk(database_url, 2, priority=TRANSACTIONAL_PRIORITY)
    _sign_up(database_url, 1, prefix="alone")
    sweeper = Sweeper(get_settings(), database_url, after=lambda: None)
    await sweeper.sweep()
    assert [m["To"] for m in faults(smtp).parsed()] == ["alone0@example.com"]
    waiting = f"SELECT count(*) FROM procrastinate_jobs WHERE id = {several} AND status = 'todo'"
    assert count(database_url, waiting) == 1
    await drain()
    assert len(smtp.messages) == 3


async def test_an_idle_worker_sends_a_welcome_email_by_its_sweep_not_by_its_job(
    database_url: str, smtp: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with app.open_async():
        with _no_periodic_deferrer():
            worker = asyncio.create_task(
                app.run_worker_async(
                    concurrency=2,
                    install_signal_handlers=False,
                    queues=["email"],
                    fetch_job_polling_interval=3600,  # only a notification or the sweeper wakes it
                )
            )
            try:

                def sweeping() -> bool:
                    return app._last_worker is not None and app._last_worker.sweeper is not None

                await _until(sweeping, "the worker to start")
                running = app._last_worker
                assert running is not None
                assert running.sweeper is not None
                sweeper = running.sweeper
                await _until(lambda: sweeper.sweeps >= 1, "the first sweep")
                _sign_up(database_url, 1, prefix="idle")
                await _until(lambda: len(smtp.messages) == 1, "the welcome email")
                await _until(lambda: count(database_url, JOBS_DONE) == 1, "its job to finish")
                swept = "sweep: {'sent': 1"  # logged once the sweep's batches are done
                await _until(
                    lambda: any(swept in r.getMessage() for r in caplog.records), "the sweep's log"
                )
                ran = [r for r in caplog.records if r.getMessage().startswith("email.deliver job")]
                assert not ran  # its job never ran
                # A job the sweep cannot take: the sweeper wakes procrastinate's fetch for it.
                queue_chunk(database_url, 2, priority=TRANSACTIONAL_PRIORITY)
                await _until(lambda: len(smtp.messages) == 3, "the job of two emails")
            finally:
                running = app._last_worker
                if running is not None:
                    running.stop()  # type: ignore[no-untyped-call]  # untyped upstream
                await asyncio.wait_for(worker, 30)


@pytest.mark.parametrize(
    ("options", "sweeps"),
    [
        ({}, True),
        ({"queues": ["email"]}, True),
        ({"queues": ["default"]}, False),  # serves no email
        ({"wait": False}, False),  # drains the queue and stops
        ({"listen_notify": False}, False),  # nothing would wake it
    ],
)
async def test_which_workers_sweep(
    database_url: str, options: dict[str, object], sweeps: bool
) -> None:
    worker = app.make_worker(**options)  # type: ignore[arg-type]  # WorkerOptions keys
    assert (worker.sweeper is not None) is sweeps
