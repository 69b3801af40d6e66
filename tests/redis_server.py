"""A real Redis for the cache tests: a unique key prefix per test, cleaned up after.

``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) names the server. When it
cannot be reached the tests that need it skip, saying why, unless
``JOBS_REQUIRE_SERVICES=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from redis import Redis, RedisError

from jobs.results.cache import describe_redis
from jobs.settings import get_settings

# Read at import, before the autouse fixture in conftest blanks REDIS_URL.
SERVER_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


@dataclass
class RedisPeer:
    client: Redis
    url: str
    prefix: str

    def key(self, job_id: int) -> str:
        return f"{self.prefix}:result:{job_id}"


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisPeer]:
    """REDIS_URL and a unique REDIS_KEY_PREFIX set for this test; its keys deleted after."""
    client = Redis.from_url(SERVER_URL, socket_timeout=5, decode_responses=True)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        client.close()
        reason = f"no Redis at {describe_redis(SERVER_URL)} ({exc}); set REDIS_URL"
        if os.environ.get("JOBS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (JOBS_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    prefix = f"jobs-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", SERVER_URL)
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    get_settings.cache_clear()
    try:
        yield RedisPeer(client, SERVER_URL, prefix)
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()
        get_settings.cache_clear()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung Redis."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])
