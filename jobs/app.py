"""The one procrastinate `App` of `jobs`: the composition root of the worker side.

``procrastinate --app=jobs.app.app worker`` and ``jobs worker`` both use it.
The database URL is resolved when the first connection is opened, not at
import, and the periodic promotion is registered from the settings when the
app loads its tasks (when a worker starts), not when a module is imported.
"""

from __future__ import annotations

from procrastinate import App, PsycopgConnector
from procrastinate.middleware import WorkerMiddleware

from jobs.db import database_url
from jobs.mail.pool import close_pool
from jobs.ops.metrics import observe_job
from jobs.results.middleware import record_outcome
from jobs.settings import Settings, get_settings
from jobs.tasks import PROMOTION_TASK, QUEUES
from jobs.worker.timeout import timeout_middleware

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
            await close_pool()
        finally:
            await super().close_async()


def make_connector(conninfo: str | None = None) -> PsycopgConnector:
    """A connector for ``conninfo`` (default: the configured/embedded database)."""
    return Connector(conninfo=conninfo or _conninfo, min_size=1, max_size=10)


class JobsApp(App):
    """procrastinate's `App`, whose schedule comes from the settings when its tasks load."""

    def perform_import_paths(self) -> None:
        first = not self._import_paths_performed
        super().perform_import_paths()  # type: ignore[no-untyped-call]  # untyped upstream
        if first:
            schedule(self, get_settings())


def schedule(app: App, settings: Settings) -> None:
    """Register the periodic promotion (PROMOTION_CRON, UTC) unless it is disabled."""
    if settings.PROMOTION_SCHEDULE_ENABLED:
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
