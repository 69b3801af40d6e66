"""Graceful shutdown of a worker: the first SIGTERM/SIGINT drains, the second exits at once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulShutdown:
    """Signal handling around a running worker task.

    First signal: cancel the worker task, which procrastinate turns into a
    graceful stop — no new job is fetched, running jobs get up to the graceful
    timeout to finish, then the pools close and the process exits 0.
    Second signal: exit at once (status 128 + signal); the interrupted jobs
    are re-queued by the stalled-job check once this worker's heartbeat is old.
    """

    def __init__(self, worker_task: asyncio.Task[Any], *, timeout: float | None) -> None:
        self.worker_task = worker_task
        self.timeout = timeout
        self.requested = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> GracefulShutdown:
        loop = asyncio.get_running_loop()
        try:
            for sig in SIGNALS:
                loop.add_signal_handler(sig, self._on_signal, sig)
        except (RuntimeError, ValueError):  # not the main thread
            logger.warning("not in the main thread: SIGTERM/SIGINT are not handled")
            return self
        self._loop = loop
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and not self._loop.is_closed():
            for sig in SIGNALS:
                self._loop.remove_signal_handler(sig)
        self._loop = None

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            logger.error(
                "%s again: exiting now; running jobs will be re-queued by the stalled-job check",
                name,
            )
            os._exit(128 + signum)
        self.requested = True
        limit = "no limit" if self.timeout is None else f"up to {self.timeout:g}s"
        logger.warning(
            "%s: stopping; no new jobs, running jobs may finish (%s); send it again to exit now",
            name,
            limit,
        )
        self.worker_task.cancel()
