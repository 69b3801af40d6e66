"""The one procrastinate `App` of `jobs`: the composition root of the worker side.

``procrastinate --app=jobs.app.app worker`` and ``jobs worker`` both use it.
The database URL is resolved when the first connection is opened, not at
import, and the periodic promotion is registered from the settings when the
app loads its tasks (when a worker starts), not when a module is imported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Unpack

import psycopg
import psycopg_pool
from procrastinate import App, PsycopgConnector
from procrastinate.app import WorkerOptions
from procrastinate.exceptions import ConnectorException
from procrastinate.middleware import WorkerMiddleware
from procrastinate.worker import Worker

from jobs.db import async_session_factory, database_url, describe_server
from jobs.db.liveness import CheckAfterIdle
from jobs.db.queue_sql import RETRY_UNSAVED_JOBS
from jobs.errors import DatabaseUnreachable
from jobs.mail.journal import close_journal
from jobs.mail.pool import close_pool
from jobs.ops.metrics import observe_job
from jobs.results.middleware import record_outcome
from jobs.settings import Settings, get_settings
from jobs.tasks import PROMOTION_TASK, QUEUES
from jobs.worker.outage import wait_for_database
from jobs.worker.sweeper import SweepingWorker
from jobs.worker.timeout import timeout_middleware
from jobs.worker.warmup import warm_up

logger = logging.getLogger(__name__)

__all__ = ["QUEUES", "app", "make_connector"]

TASK_MODULES = (
    "jobs.tasks.delivery",
    "jobs.tasks.promotion",
    "jobs.tasks.maintenance",
)
PROMOTION_PERIODIC_ID = "promotion"


def _conninfo() -> str:
    return database_url(get_settings())


class Connector(PsycopgConnector):
    """procrastinate's connector; closing it (the app) also closes the SMTP pool.

    Both ``jobs worker`` and ``procrastinate --app=jobs.app.app worker`` close
    the app when the worker stops, so pooled SMTP connections say QUIT then.
    """

    async def close_async(self) -> None:
        try:
            await close_journal()  # accepted messages not yet written: write them first
            await close_pool()
        finally:
            await super().close_async()


async def _autocommit(connection: psycopg.AsyncConnection[Any]) -> None:
    await connection.set_autocommit(True)


def _pool(**options: Any) -> psycopg_pool.AsyncConnectionPool:
    """procrastinate's pool: connections in autocommit, checked only after they sat idle.

    Every statement procrastinate sends is one function call or one statement, so a
    BEGIN and a COMMIT around each were two round trips for nothing (a fetch or a
    finish took four with the check). Set by ``configure``: the pool's connection
    arguments also open procrastinate's LISTEN connection, which sets autocommit itself.
    """
    return psycopg_pool.AsyncConnectionPool(
        **{**options, "check": CheckAfterIdle(), "configure": _autocommit}
    )


def make_connector(conninfo: str | None = None) -> PsycopgConnector:
    """A connector for ``conninfo`` (default: the configured/embedded database)."""
    return Connector(conninfo=conninfo or _conninfo, min_size=1, max_size=10, pool_factory=_pool)


JOURNAL_WAIT = 30.0  # seconds, after an outage, for the journal before jobs are re-queued


class JobsApp(App):
    """procrastinate's `App`, whose schedule comes from the settings when its tasks load,
    and whose long-running workers ride out database outages (`jobs.worker.outage`).

    Both ``jobs worker`` and ``procrastinate --app=jobs.app.app worker`` come here.
    """

    _last_worker: SweepingWorker | None = None

    def perform_import_paths(self) -> None:
        first = not self._import_paths_performed
        super().perform_import_paths()  # type: ignore[no-untyped-call]  # untyped upstream
        if first:
            schedule(self, get_settings())

    def make_worker(self, **options: Unpack[WorkerOptions]) -> SweepingWorker:
        """A procrastinate worker with this app's defaults (as `App._worker` makes them),
        and a sweeper of transactional emails (`jobs.worker.sweeper`) when it runs for long."""
        merged: WorkerOptions = {**self.worker_defaults, **options}
        worker = SweepingWorker(app=self, **merged)
        settings = get_settings()
        worker.sweep_with(settings, database_url(settings))
        self._last_worker = worker
        return worker

    def _worker(self, **kwargs: Unpack[WorkerOptions]) -> Worker:
        return self.make_worker(**kwargs)

    async def run_worker_async(self, **kwargs: Unpack[WorkerOptions]) -> None:
        """procrastinate's worker; a long-running one (``wait``) rides out database
        outages (`ride_out`)."""
        if not kwargs.get("wait", True):  # draining: no outage handling
            await super().run_worker_async(**kwargs)
            return
        await self.ride_out(lambda: super(JobsApp, self).run_worker_async(**kwargs))

    async def ride_out(self, run_once: Callable[[], Awaitable[None]]) -> None:
        """Run ``run_once`` (one procrastinate worker, made by `make_worker`); when the
        database goes away, wait for it (WORKER_DB_OUTAGE_LIMIT) and run it again, in
        this process. The schema is checked before every start."""
        from jobs.db.migrations import check_schema, usable_url  # alembic: worker side only

        self.perform_import_paths()
        settings = get_settings()
        url = await asyncio.to_thread(usable_url, settings)
        warm = False
        while True:
            lost: BaseException | None
            try:
                # At every (re)start: a database restored or failed over may be behind.
                await asyncio.to_thread(check_schema, url)
                if not warm:
                    await warm_up(settings, url)
                    warm = True
                await run_once()
                lost = self._last_worker.lost if self._last_worker else None
            except (ConnectorException, DatabaseUnreachable) as exc:
                lost = exc
            if lost is None:
                return  # asked to stop
            await wait_for_database(
                self._database_answers,
                lost=lost,
                server=describe_server(url),
                limit=settings.WORKER_DB_OUTAGE_LIMIT,
            )
            await self._after_outage(url)

    async def _database_answers(self) -> None:
        pool = self.connector.pool  # type: ignore[attr-defined]  # a PsycopgConnector
        await pool.check()  # replaces the pool's connections that died with the server
        await self.connector.execute_query_one_async("SELECT 1 AS one")

    async def _after_outage(self, url: str) -> None:
        """Write the acceptances kept in memory, then re-queue the jobs the lost worker was
        running (their status could not be saved) and forget that worker."""
        from jobs.mail.journal import current_journal

        journal = current_journal()
        if journal is not None and not await journal.flush(JOURNAL_WAIT):
            logger.warning("accepted messages are still not journaled; retries will check again")
        worker = self._last_worker
        if worker is None:
            return
        if worker.unsaved:
            params = {"job_ids": sorted(worker.unsaved), "worker_id": worker.worker_id}
            async with async_session_factory(url)() as session, session.begin():
                await session.execute(RETRY_UNSAVED_JOBS, params)
            logger.info("re-queued the job(s) whose status was lost: %s", sorted(worker.unsaved))
            worker.unsaved.clear()
        if worker.worker_id is not None:
            await self.job_manager.unregister_worker(worker.worker_id)
            worker.worker_id = None


def schedule(app: App, settings: Settings) -> None:
    """Register the periodic promotion (PROMOTION_CRON, UTC) unless it is disabled.

    A worker that schedules promotions must be able to sign their unsubscribe links:
    without SECRET_KEY (and a configured database) it refuses to start.
    """
    if settings.PROMOTION_SCHEDULE_ENABLED:
        from jobs.promotions.promote import promotion_config

        promotion_config(settings)  # ConfigError, naming SECRET_KEY
        task = app.tasks[PROMOTION_TASK]
        app.periodic(cron=settings.PROMOTION_CRON, periodic_id=PROMOTION_PERIODIC_ID)(task)


# Outermost first: metrics and the result recorder see every outcome, a timeout
# included; every job runs under JOB_TIMEOUT_SECONDS (jobs.worker.timeout),
# whichever CLI starts the worker.
WORKER_MIDDLEWARE: list[WorkerMiddleware] = [observe_job, record_outcome, timeout_middleware]

app = JobsApp(
    connector=make_connector(),
    import_paths=list(TASK_MODULES),
    worker_defaults={"worker_middleware": WORKER_MIDDLEWARE},
)
