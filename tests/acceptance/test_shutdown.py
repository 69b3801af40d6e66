"""Graceful shutdown of `jobs worker`: SIGTERM lets the running job finish, fetches nothing
new, and exits 0; a second SIGTERM exits at once."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg

from jobs.app import app
from tests import ops_tasks
from tests.workers import marks, spawn, wait_until


def _statuses(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT status FROM procrastinate_jobs WHERE queue_name = 'test' ORDER BY id"
        ).fetchall()
    return [str(status) for (status,) in rows]


async def _defer_two(tmp_path: Path) -> tuple[Path, Path]:
    done_file, release = tmp_path / "marks", tmp_path / "release"
    async with app.open_async():
        for _ in range(2):
            await ops_tasks.block.defer_async(marks=str(done_file), release=str(release))
    return done_file, release


async def test_sigterm_lets_the_running_job_finish_and_exits_zero(
    database_url: str, tmp_path: Path
) -> None:
    done_file, release = await _defer_two(tmp_path)
    log = tmp_path / "worker.log"
    worker = spawn("worker", "--queues", "test", "--concurrency", "1", log=log)
    wait_until(lambda: marks(done_file) == ["start"], "the first job to start")

    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM: stopping" in log.read_text(), "the worker to acknowledge")
    assert worker.poll() is None  # still running: the job is not done
    release.touch()

    assert worker.wait(timeout=120) == 0, log.read_text()
    assert marks(done_file) == ["start", "done"]
    assert _statuses(database_url) == ["succeeded", "todo"]  # nothing new was fetched


async def test_second_sigterm_exits_at_once(database_url: str, tmp_path: Path) -> None:
    done_file, _never_released = await _defer_two(tmp_path)
    log = tmp_path / "worker.log"
    worker = spawn("worker", "--queues", "test", "--concurrency", "1", log=log)
    wait_until(lambda: marks(done_file) == ["start"], "the first job to start")

    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM: stopping" in log.read_text(), "the worker to acknowledge")
    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()
    assert "SIGTERM again: exiting now" in log.read_text()
    assert marks(done_file) == ["start"]
    # Left `doing`: the stalled-job check re-queues it (tests/acceptance/test_recovery.py).
    assert _statuses(database_url) == ["doing", "todo"]


async def test_a_job_outliving_the_shutdown_timeout_is_interrupted_and_the_worker_exits_zero(
    database_url: str, tmp_path: Path
) -> None:
    done_file, _never_released = await _defer_two(tmp_path)
    log = tmp_path / "worker.log"
    worker = spawn(
        "worker",
        "--queues",
        "test",
        "--concurrency",
        "1",
        log=log,
        env={"WORKER_SHUTDOWN_TIMEOUT": "1"},
    )
    wait_until(lambda: marks(done_file) == ["start"], "the first job to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 0, log.read_text()
    # Interrupted (test.block has no retry: aborted), never left `doing`.
    assert _statuses(database_url) == ["aborted", "todo"]
