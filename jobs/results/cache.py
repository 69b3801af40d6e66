"""The optional Redis cache in front of `job_results` (``pip install 'jobs[cache]'``).

PostgreSQL is the source of truth; Redis only makes repeated reads cheap. Every
Redis error is caught here: the caller gets a miss (or a skipped write) and the
PostgreSQL answer, never an exception. One warning is logged per outage; for
`RETRY_AFTER` seconds after a failure Redis is not asked at all, so a dead or
slow server costs at most one short timeout now and then. Values are JSON
objects, never pickle. Keys are ``<REDIS_KEY_PREFIX>:result:<job id>``.

The client is redis-py's thread-safe, pooled *sync* client; the async methods
run it in a thread, so one client serves every event loop of the process
(workers, tests, web apps) and nothing is left to close.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jobs.settings import Settings

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)

RETRY_AFTER = 5.0  # seconds Redis is bypassed after a failure


def describe_redis(url: str) -> str:
    """``host:port/db`` (or the socket path) of a Redis URL, without credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


class ResultCache:
    """JSON objects in Redis under ``<prefix>:result:<job id>``, with a TTL."""

    def __init__(self, url: str, *, prefix: str, ttl: int, timeout: float) -> None:
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.prefix = prefix
        self.ttl = ttl
        self.server = describe_redis(url)
        self._password = urlsplit(url).password
        self._client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # fail fast: the answer comes from PostgreSQL
            decode_responses=True,
        )
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0

    def __repr__(self) -> str:
        return f"ResultCache(server={self.server!r}, prefix={self.prefix!r}, ttl={self.ttl})"

    def key(self, job_id: int) -> str:
        return f"{self.prefix}:result:{job_id}"

    def get(self, job_id: int) -> dict[str, Any] | None:
        """The cached object for ``job_id``; None on a miss or when Redis is unavailable."""
        if not self._available():
            return None
        from redis import RedisError

        try:
            raw = self._client.get(self.key(job_id))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._succeeded()
        if raw is None:
            return None
        try:
            value = json.loads(str(raw))
        except ValueError:
            value = None
        if not isinstance(value, dict):
            logger.warning("ignoring a non-JSON-object value at Redis key %s", self.key(job_id))
            return None
        return value

    def put(self, job_id: int, value: dict[str, Any]) -> None:
        """Store ``value`` (JSON-serializable) for RESULT_TTL seconds; errors are logged."""
        if not self._available():
            return
        from redis import RedisError

        try:
            self._client.set(self.key(job_id), json.dumps(value), ex=self.ttl)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._succeeded()

    async def get_async(self, job_id: int) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.get, job_id)

    async def put_async(self, job_id: int, value: dict[str, Any]) -> None:
        await asyncio.to_thread(self.put, job_id, value)

    def _available(self) -> bool:
        return not self._down or time.monotonic() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            first = not self._down
            self._down = True
            self._retry_at = time.monotonic() + RETRY_AFTER
        reason = str(exc)
        if self._password:
            reason = reason.replace(self._password, "***")
        log = logger.warning if first else logger.debug
        log(
            "Redis at %s is unavailable (%s: %s); results come from PostgreSQL alone",
            self.server,
            type(exc).__name__,
            reason,
        )

    def _succeeded(self) -> None:
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                logger.info("Redis at %s is reachable again", self.server)


_caches: dict[tuple[str, str, int, float], ResultCache] = {}
_caches_lock = threading.Lock()


def result_cache(settings: Settings) -> ResultCache | None:
    """The process's cache for these settings, or None when REDIS_URL is unset."""
    if settings.REDIS_URL is None:
        return None
    config = (
        settings.REDIS_URL.get_secret_value(),
        settings.REDIS_KEY_PREFIX,
        settings.RESULT_TTL,
        settings.REDIS_TIMEOUT,
    )
    with _caches_lock:
        if config not in _caches:
            url, prefix, ttl, timeout = config
            _caches[config] = ResultCache(url, prefix=prefix, ttl=ttl, timeout=timeout)
        return _caches[config]
