"""Riding out a database outage (restart, failover, network blip) inside one worker process.

procrastinate stops its worker when a side task fails — the LISTEN connection
dies with the server — and `run_worker_async` then returns as if asked to stop.
`OutageWorker` notes that failure instead of logging it as an error, and
`wait_for_database` polls with capped backoff until the server answers again,
so the app (`jobs.app.JobsApp`) can start a fresh procrastinate worker in the
same process, SMTP pool and HTTP endpoint kept. Only an outage longer than
WORKER_DB_OUTAGE_LIMIT ends the process, with `DatabaseUnreachable` (non-zero).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from procrastinate.exceptions import ConnectorException
from procrastinate.job_context import JobContext
from procrastinate.worker import Worker

from jobs.errors import DatabaseUnreachable

logger = logging.getLogger(__name__)

FIRST_DELAY = 0.2  # seconds before the first reconnection attempt; doubles each time
MAX_DELAY = 5.0
CHECK_TIMEOUT = 5.0


class OutageWorker(Worker):
    """procrastinate's worker; a failed side task stops it and is kept in ``lost``, and
    ``unsaved`` holds the jobs it ran whose outcome it could not save (database gone)."""

    lost: BaseException | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsaved: set[int] = set()

    async def _process_job(self, context: JobContext) -> None:
        job_id = context.job.id
        assert job_id is not None
        self.unsaved.add(job_id)
        try:
            await super()._process_job(context)
        except ConnectorException as exc:
            if isinstance(exc.__cause__, psycopg.errors.RaiseException):
                # procrastinate_finish_job_v1 refused: across the outage the job was
                # already re-queued or finished elsewhere, so its fate is not ours to save.
                self.unsaved.discard(job_id)
                logger.warning(
                    "job %s changed hands during the outage: %s", job_id, first_line(exc)
                )
            else:  # the database is gone: the job is re-queued at reconnect
                logger.warning(
                    "job %s: its outcome could not be saved: %s", job_id, first_line(exc)
                )
            return
        self.unsaved.discard(job_id)  # its status is saved

    # Replaces procrastinate's monitor, which logs the failure as an error with a
    # traceback: here it is an expected outage, reported once by the app.
    async def _monitor_side_tasks(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        done, _ = await asyncio.wait(side_tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                self.lost = task.exception()
                self.stop()  # type: ignore[no-untyped-call]  # untyped upstream
                return

    # procrastinate logs every failed side task again at shutdown: not the one noted above.
    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        noted = [t for t in side_tasks if t.done() and not t.cancelled() and t.exception()]
        await super()._shutdown([t for t in side_tasks if t not in noted])


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or of its cause's), or its type."""
    for error in (exc.__cause__, exc):
        if error is not None and str(error).strip():
            return str(error).strip().splitlines()[0]
    return type(exc).__name__


async def wait_for_database(
    answers: Callable[[], Awaitable[object]],
    *,
    lost: BaseException,
    server: str,
    limit: float,
) -> float:
    """Log one WARNING, then call ``answers`` with capped backoff until it succeeds;
    the outage's length in seconds. `DatabaseUnreachable` after ``limit`` seconds."""
    logger.warning(
        "lost PostgreSQL at %s (%s): waiting for it to come back (up to %gs, "
        "WORKER_DB_OUTAGE_LIMIT); running jobs were let finish",
        server,
        first_line(lost),
        limit,
    )
    start = time.monotonic()
    delay = FIRST_DELAY
    while True:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await answers()
        except TimeoutError:
            lost = TimeoutError(f"no answer within {CHECK_TIMEOUT:g}s")
        except Exception as exc:
            lost = exc
        else:
            waited = time.monotonic() - start
            logger.warning("PostgreSQL at %s is back after %.1fs: working again", server, waited)
            return waited
        remaining = limit - (time.monotonic() - start)
        if remaining <= 0:
            raise DatabaseUnreachable(
                f"no PostgreSQL at {server} for {limit:g}s (WORKER_DB_OUTAGE_LIMIT): "
                f"{first_line(lost)}"
            )
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_DELAY)
