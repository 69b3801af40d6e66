"""The one procrastinate `App` of `jobs`.

``procrastinate --app=jobs.app.app worker`` and ``jobs worker`` both use it.
The database URL is resolved when the first connection is opened, not at
import, so importing `jobs` never starts a database.
"""

from __future__ import annotations

from procrastinate import App, PsycopgConnector
from procrastinate.middleware import WorkerMiddleware

from jobs.db import database_url
from jobs.mail.pool import close_pool
from jobs.metrics import observe_job
from jobs.recorder import record_outcome
from jobs.settings import get_settings
from jobs.timeout import timeout_middleware

QUEUES = ("default", "email")

TASK_MODULES = (
    "jobs.tasks.email_tasks",
    "jobs.tasks.promotion_tasks",
    "jobs.tasks.maintenance",  # operations: stalled jobs, retention
)


def _conninfo() -> str:
    return database_url(get_settings())


class Connector(PsycopgConnector):
    """procrastinate's connector; closing it (the app) also closes the SMTP pool.

    Both ``jobs worker`` and ``procrastinate --app=jobs.app.app worker`` close
    the app when the worker stops, so pooled SMTP connections say QUIT then.
    """

    async def close_async(self) -> None:
        try:
            await close_pool()
        finally:
            await super().close_async()


def make_connector(conninfo: str | None = None) -> PsycopgConnector:
    """A connector for ``conninfo`` (default: the configured/embedded database)."""
    return Connector(conninfo=conninfo or _conninfo, min_size=1, max_size=10)


# Outermost first: metrics and the result recorder see every outcome, a timeout
# included; every job runs under JOB_TIMEOUT_SECONDS (jobs.timeout), whichever
# CLI starts the worker.
WORKER_MIDDLEWARE: list[WorkerMiddleware] = [observe_job, record_outcome, timeout_middleware]

app = App(
    connector=make_connector(),
    import_paths=list(TASK_MODULES),
    worker_defaults={"worker_middleware": WORKER_MIDDLEWARE},
)
