"""Is this worker healthy? Asked from the HTTP thread, answered by the worker's event loop.

Healthy means: the event loop runs callbacks (it is not blocked or gone) and
the worker's own database pool answers a query, both within a timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable

from jobs.worker.outage import first_line

DEFAULT_TIMEOUT = 5.0


class LoopProbe:
    """Callable from any thread: ``(healthy, reason)``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        check_database: Callable[[], Awaitable[bool]],
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._loop = loop
        self._check_database = check_database
        self._timeout = timeout

    def __call__(self) -> tuple[bool, str]:
        if self._loop.is_closed() or not self._loop.is_running():
            return False, "the worker's event loop is not running"
        future = asyncio.run_coroutine_threadsafe(self._probe(), self._loop)
        try:
            return future.result(timeout=self._timeout * 2)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return False, f"the worker's event loop did not answer within {self._timeout * 2:g}s"

    async def _probe(self) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self._timeout):
                ready = await self._check_database()
        except TimeoutError:
            return False, f"the database did not answer within {self._timeout:g}s"
        except Exception as exc:
            return False, f"database: {first_line(exc)}"
        if not ready:
            return False, "database: procrastinate's tables are missing (run `jobs migrate`)"
        return True, "ok"
