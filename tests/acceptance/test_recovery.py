"""Stalled jobs: a worker killed with SIGKILL leaves its job `doing`; the maintenance task
re-queues it, and gives up after JOB_MAX_RECOVERIES."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import psycopg
import pytest
from procrastinate.exceptions import AlreadyEnqueued

from jobs.app import app
from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.mail.enqueue import enqueue_email
from jobs.models import EmailMessage, EmailStatus
from jobs.settings import get_settings
from jobs.tasks.maintenance import recover_stalled
from tests import ops_tasks
from tests.conftest import count, drain
from tests.workers import marks, spawn, wait_until

STALLED_JOBS = """
SELECT count(*) FROM procrastinate_jobs j
  LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE j.status = 'doing' AND (w.id IS NULL OR w.last_heartbeat < now() - interval '1 second')
"""


def _status(url: str, job_id: int) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status FROM procrastinate_jobs WHERE id = %s", [job_id]
        ).fetchone()
    assert row is not None
    return str(row[0])


async def _run_maintenance(database_url: str) -> None:
    """Defer the stalled-job check and run it on a real worker (queue `default` only)."""
    async with app.open_async():
        with contextlib.suppress(AlreadyEnqueued):  # a worker's periodic deferrer was first
            await recover_stalled.configure().defer_async(timestamp=0)
        await app.run_worker_async(
            queues=["default"], wait=False, install_signal_handlers=False, listen_notify=False
        )


@pytest.fixture
def stalled_after_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_STALLED_AFTER", "1")
    get_settings.cache_clear()


async def test_job_of_a_killed_worker_is_recovered_and_completes_once(
    database_url: str, tmp_path: Path, stalled_after_one_second: None
) -> None:
    done_file, release = tmp_path / "marks", tmp_path / "release"
    async with app.open_async():
        job_id = await ops_tasks.block.defer_async(marks=str(done_file), release=str(release))
    worker = spawn("worker", "--queues", "test", "--concurrency", "1", log=tmp_path / "w.log")
    wait_until(lambda: marks(done_file) == ["start"], "the job to start")
    worker.send_signal(signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    assert _status(database_url, job_id) == "doing"  # what procrastinate alone leaves behind

    wait_until(lambda: count(database_url, STALLED_JOBS) == 1, "the dead worker to look stalled")
    release.touch()
    await _run_maintenance(database_url)
    assert _status(database_url, job_id) == "todo"
    await drain(concurrency=1)

    assert marks(done_file) == ["start", "start", "done"]  # ran again, completed once
    assert _status(database_url, job_id) == "succeeded"
    assert (
        count(database_url, f"SELECT recoveries FROM job_recoveries WHERE job_id = {job_id}") == 1
    )


async def test_job_that_always_kills_its_worker_ends_failed_after_max_recoveries(
    database_url: str,
    tmp_path: Path,
    stalled_after_one_second: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOB_MAX_RECOVERIES", "2")
    get_settings.cache_clear()
    done_file = tmp_path / "marks"
    async with app.open_async():
        job_id = await ops_tasks.kill_worker.defer_async(marks=str(done_file))

    for death in (1, 2, 3):
        worker = spawn("worker", "--queues", "test", log=tmp_path / "w.log")
        assert worker.wait(timeout=120) == -signal.SIGKILL
        assert marks(done_file) == ["start"] * death
        wait_until(lambda: count(database_url, STALLED_JOBS) == 1, "the worker to look stalled")
        await _run_maintenance(database_url)
        expected = "todo" if death <= 2 else "failed"
        assert _status(database_url, job_id) == expected

    assert (
        count(database_url, f"SELECT recoveries FROM job_recoveries WHERE job_id = {job_id}") == 3
    )
    # A fourth worker finds nothing to run: the job no longer loops.
    worker = spawn("worker", "--queues", "test", "--drain", log=tmp_path / "w.log")
    assert worker.wait(timeout=120) == 0
    assert marks(done_file) == ["start"] * 3


async def test_emails_of_a_job_given_up_are_failed_with_the_reason(
    database_url: str, smtp: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No email stays pending with no job to send it."""
    monkeypatch.setenv("JOB_MAX_RECOVERIES", "0")
    get_settings.cache_clear()
    with session_factory(database_url)() as session, session.begin():
        message = enqueue_email(session, to="a@example.com", template="welcome", context={})
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The worker that fetched the job died long ago (its row is still there).
        [worker_id] = conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) "
            "VALUES (now() - interval '1 hour') RETURNING id"
        ).fetchone() or [0]
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", [worker_id])
    await _run_maintenance(database_url)
    with session_factory(database_url)() as session:
        row = session.get_one(EmailMessage, message.id)
    assert row.status == EmailStatus.FAILED
    assert row.last_error == "worker died 1 times"
    assert (
        count(database_url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'") == 1
    )
    assert smtp.messages == []
