"""The one procrastinate `App` of `jobs`.

``procrastinate --app=jobs.app.app worker`` and ``jobs worker`` both use it.
The database URL is resolved when the first connection is opened, not at
import, so importing `jobs` never starts a database.
"""

from __future__ import annotations

from procrastinate import App, PsycopgConnector
from procrastinate.middleware import WorkerMiddleware

from jobs.db import database_url
from jobs.recorder import record_outcome
from jobs.settings import get_settings

QUEUES = ("default", "email")

TASK_MODULES = ("jobs.tasks.email_tasks", "jobs.tasks.promotion_tasks")


def _conninfo() -> str:
    return database_url(get_settings())


def make_connector(conninfo: str | None = None) -> PsycopgConnector:
    """A connector for ``conninfo`` (default: the configured/embedded database)."""
    return PsycopgConnector(conninfo=conninfo or _conninfo, min_size=1, max_size=10)


# Results (issue 6): every job's value / failure reason is recorded in job_results.
WORKER_MIDDLEWARE: list[WorkerMiddleware] = [record_outcome]

app = App(
    connector=make_connector(),
    import_paths=list(TASK_MODULES),
    worker_defaults={"worker_middleware": WORKER_MIDDLEWARE},
)
