"""SMTP connections shared by every job of a worker process.

Connections are opened on first use, reused across messages and jobs, checked
before reuse (a dropped one is replaced), never more than ``max_size`` at once,
and closed when the worker stops (`close_pool`, called by the app's connector
and by `jobs.worker.run_worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from jobs.mail import smtp
from jobs.mail.config import SmtpConfig, is_loopback
from jobs.mail.smtp_connection import SmtpConnection

logger = logging.getLogger(__name__)

# A connection idle longer than this is checked with NOOP before reuse.
IDLE_CHECK_SECONDS = 10.0
QUIT_TIMEOUT = 2.0


class SmtpPool:
    """At most ``max_size`` connections to one server, for one event loop."""

    def __init__(self, config: SmtpConfig, max_size: int) -> None:
        self.config = config
        self.max_size = max_size
        self.loop = asyncio.get_running_loop()
        self.opened = 0  # connections opened over the pool's life
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[tuple[SmtpConnection, float]] = []  # LIFO: warmest first
        self._in_use = 0
        self._closed = False
        if not (config.starttls or config.ssl_tls or is_loopback(config.host)):
            logger.warning("SMTP to %s is not encrypted (no STARTTLS, no TLS)", config.address)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[SmtpConnection]:
        """A connected client for one message; it goes back to the pool afterwards.

        After `smtp.Rejected` the connection is healthy (the envelope was reset)
        and is kept; after any other error it is closed, never reused.
        """
        async with self._slots:
            client = await self._checkout()
            self._in_use += 1
            try:
                yield client
            except (smtp.Rejected, smtp.Deferred):  # refused, not broken: keep it
                self._checkin(client)
                raise
            except BaseException:
                client.close()
                raise
            finally:
                self._in_use -= 1
            self._checkin(client)

    async def _checkout(self) -> SmtpConnection:
        if self._closed:
            raise RuntimeError("the SMTP pool is closed")
        now = self.loop.time()
        while self._idle:
            client, since = self._idle.pop()
            if not client.is_connected:
                client.close()
                continue
            if now - since > IDLE_CHECK_SECONDS:
                try:
                    await client.noop()
                except smtp.TRANSIENT_ERRORS:
                    client.close()
                    continue
                except BaseException:  # cancelled: it is in nobody's hands now
                    client.close()
                    raise
            return client
        client = smtp.client(self.config)
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        self.opened += 1
        logger.debug("SMTP connection %d to %s opened", self.opened, self.config.address)
        return client

    def _checkin(self, client: SmtpConnection) -> None:
        if self._closed or not client.is_connected:
            client.close()
        else:
            self._idle.append((client, self.loop.time()))

    @property
    def open_connections(self) -> int:
        return self._in_use + sum(client.is_connected for client, _ in self._idle)

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def close(self) -> None:
        """Say QUIT on every idle connection; connections in use close when released."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(client) for client, _ in idle))

    def abandon(self) -> None:
        """Drop the connections without a goodbye (no QUIT: the loop may be gone)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for client, _ in idle:
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                client.close()


async def _quit(client: SmtpConnection) -> None:
    try:
        async with asyncio.timeout(QUIT_TIMEOUT):
            await client.quit()
    except smtp.TRANSIENT_ERRORS:
        client.close()


# One pool per stream: "default", and "bulk" when MAIL_BULK_SERVER gives promotions their own.
_pools: dict[str, SmtpPool] = {}


def open_connections() -> int:
    """SMTP connections the process's pools hold open now (the metrics gauge)."""
    return sum(pool.open_connections for pool in list(_pools.values()))


def get_pool(config: SmtpConfig, max_size: int, stream: str = "default") -> SmtpPool:
    """The pool of ``stream`` for ``config`` on the running loop (created on first use)."""
    loop = asyncio.get_running_loop()
    current = _pools.get(stream)
    if current is not None and (current.config, current.max_size, current.loop) == (
        config,
        max_size,
        loop,
    ):
        return current
    if current is not None:  # settings changed (tests) or a new event loop
        current.abandon()
    _pools[stream] = pool = SmtpPool(config, max_size)
    return pool


async def close_pool() -> None:
    """Close the process's pools, if any (worker shutdown)."""
    pools = list(_pools.values())
    _pools.clear()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - called from sync code
        running = None
    for current in pools:
        if current.loop is running:
            await current.close()
        else:
            current.abandon()
