"""Operating a long-running worker: its HTTP endpoint, heartbeat timing and signals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from procrastinate.app import WorkerOptions
from prometheus_client import REGISTRY

from jobs.app import app
from jobs.db import session_factory
from jobs.ops.metrics import DatabaseCollector
from jobs.settings import Settings
from jobs.worker.endpoint import Endpoint
from jobs.worker.health import LoopProbe
from jobs.worker.shutdown import GracefulShutdown

# procrastinate heartbeats every 10 s by default; beat faster when workers are
# declared stalled sooner, so a live worker is never mistaken for a dead one.
MAX_HEARTBEAT_INTERVAL = 10.0


@dataclass(frozen=True)
class Operations:
    """How `jobs worker` is operated; built from Settings at the edge."""

    database_url: str | None = field(default=None, repr=False)  # metrics; holds a password
    http_host: str = "127.0.0.1"
    http_port: int = 0  # 0: no HTTP endpoint
    shutdown_timeout: float | None = None  # None: wait for running jobs without limit
    stalled_after: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings, database_url: str) -> Operations:
        return cls(
            database_url=database_url,
            http_host=settings.WORKER_HTTP_HOST,
            http_port=settings.WORKER_HTTP_PORT,
            shutdown_timeout=settings.WORKER_SHUTDOWN_TIMEOUT,
            stalled_after=settings.WORKER_STALLED_AFTER,
        )

    def worker_options(self, *, queues: list[str], concurrency: int, drain: bool) -> WorkerOptions:
        """procrastinate's worker options; signals are ours (`supervise`), not procrastinate's."""
        options = WorkerOptions(
            queues=queues,
            concurrency=concurrency,
            wait=not drain,
            listen_notify=not drain,
            install_signal_handlers=False,
            update_heartbeat_interval=min(MAX_HEARTBEAT_INTERVAL, self.stalled_after / 3),
            stalled_worker_timeout=self.stalled_after,
        )
        if self.shutdown_timeout is not None:
            options["shutdown_graceful_timeout"] = self.shutdown_timeout
        return options


def _endpoint(ops: Operations) -> tuple[Endpoint, DatabaseCollector | None] | None:
    if not ops.http_port:
        return None
    probe = LoopProbe(asyncio.get_running_loop(), app.check_connection_async)
    endpoint = Endpoint(ops.http_host, ops.http_port, probe=probe)
    collector = None
    if ops.database_url is not None:
        collector = DatabaseCollector(
            session_factory(ops.database_url), stalled_after=ops.stalled_after
        )
    return endpoint, collector


async def supervise(run: Callable[[], Awaitable[None]], ops: Operations) -> None:
    """Run the worker coroutine ``run`` with the HTTP endpoint and graceful signals.

    Returns normally after a graceful stop (SIGTERM/SIGINT).
    """
    served = _endpoint(ops)
    if served is not None:
        endpoint, collector = served
        endpoint.start()
        if collector is not None:
            REGISTRY.register(collector)
    task = asyncio.ensure_future(run())
    try:
        with GracefulShutdown(task, timeout=ops.shutdown_timeout) as shutdown:
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not shutdown.requested or (current is not None and current.cancelling()):
                    raise
    finally:
        if not task.done():
            task.cancel()
        if served is not None:
            endpoint, collector = served
            if collector is not None:
                REGISTRY.unregister(collector)
            endpoint.stop()
