"""The one procrastinate `App` of `jobs`.

``procrastinate --app=jobs.app.app worker`` and ``jobs worker`` both use it.
The database URL is resolved when the first connection is opened, not at
import, so importing `jobs` never starts a database.
"""

from __future__ import annotations

from procrastinate import App, PsycopgConnector

from jobs.db import database_url
from jobs.settings import get_settings

QUEUES = ("default", "email")

TASK_MODULES = (
    "jobs.tasks.email_tasks",
    "jobs.tasks.maintenance",  # operations: stalled jobs, retention
)


def _conninfo() -> str:
    return database_url(get_settings())


def make_connector(conninfo: str | None = None) -> PsycopgConnector:
    """A connector for ``conninfo`` (default: the configured/embedded database)."""
    return PsycopgConnector(conninfo=conninfo or _conninfo, min_size=1, max_size=10)


app = App(connector=make_connector(), import_paths=list(TASK_MODULES))
