"""The Redis cache in front of job_results, against a real Redis (and a dead or hung one)."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import psycopg
import pytest

from jobs.results.store import State, get_result, get_result_async
from jobs.settings import get_settings
from tests.conftest import drain
from tests.redis_server import RedisPeer, closed_port, silent_server
from tests.result_tasks import answer, boom, defer

CACHE_LOGGER = "jobs.results.cache"


def _point_redis_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    get_settings.cache_clear()


def _cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == CACHE_LOGGER and r.levelno == logging.WARNING
    ]


async def _finished_job(value: Any) -> int:
    job_id = await defer(answer, value=value)
    await drain()
    return job_id


async def test_a_finished_job_is_written_through_as_json_with_a_ttl(
    database_url: str, redis: RedisPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESULT_TTL", "120")
    get_settings.cache_clear()
    job_id = await _finished_job({"success_count": 2, "error_count": 0, "total_users": 2})
    raw = redis.client.get(redis.key(job_id))  # before anyone asked
    assert raw is not None
    cached = json.loads(str(raw))
    assert cached["result"] == {"success_count": 2, "error_count": 0, "total_users": 2}
    assert cached["task_name"] == "tests.results.answer"
    assert 0 < int(redis.client.ttl(redis.key(job_id))) <= 120


async def test_default_key_is_namespaced_jobs_result_id(
    database_url: str, redis: RedisPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_KEY_PREFIX")
    get_settings.cache_clear()
    unique = random.randrange(10**12, 10**15)  # the shared Redis may hold other runs' ids
    with psycopg.connect(database_url) as conn:
        conn.execute(f"ALTER SEQUENCE procrastinate_jobs_id_seq RESTART WITH {unique}")
    job_id = await defer(answer, value="x")
    assert job_id == unique
    try:
        await drain()
        assert json.loads(str(redis.client.get(f"jobs:result:{job_id}")))["result"] == "x"
    finally:
        redis.client.delete(f"jobs:result:{job_id}")


async def test_read_through_after_eviction_puts_the_key_back(
    database_url: str, redis: RedisPeer
) -> None:
    job_id = await _finished_job([1, 2])
    redis.client.delete(redis.key(job_id))
    assert get_result(job_id).value == [1, 2]
    assert json.loads(str(redis.client.get(redis.key(job_id))))["result"] == [1, 2]
    assert int(redis.client.ttl(redis.key(job_id))) > 0
    redis.client.delete(redis.key(job_id))
    assert (await get_result_async(job_id)).value == [1, 2]
    assert redis.client.exists(redis.key(job_id)) == 1


async def test_redis_is_read_first(database_url: str, redis: RedisPeer) -> None:
    job_id = await _finished_job({"n": 1})
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM job_results")
    assert get_result(job_id).value == {"n": 1}  # PostgreSQL alone would say: no value


async def test_pending_and_failed_answers_are_not_cached(
    database_url: str, redis: RedisPeer
) -> None:
    """They can change (a retry, an operator retrying a failed job): PostgreSQL answers."""
    pending = await defer(answer, value=1)
    failed = await defer(boom, message="no")
    assert get_result(pending).state is State.PENDING
    await drain(fast_forward=0)
    assert get_result(failed).state is State.PENDING  # its retry is a minute away
    await drain()
    assert get_result(failed).state is State.FAILED
    assert redis.client.exists(redis.key(failed)) == 0
    assert redis.client.exists(redis.key(pending)) == 1


async def test_redis_stopped_mid_test_answers_from_postgres_with_one_warning(
    database_url: str,
    redis: RedisPeer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = await _finished_job({"ok": True})
    _point_redis_at(monkeypatch, f"redis://:s3cret-pw@127.0.0.1:{closed_port()}/0")
    caplog.set_level(logging.WARNING, logger=CACHE_LOGGER)
    assert get_result(done).value == {"ok": True}
    assert (await get_result_async(done)).value == {"ok": True}
    assert get_result(999).state is State.UNKNOWN
    # a job run while Redis is down still succeeds, its result in PostgreSQL
    later = await _finished_job("still fine")
    assert get_result(later).value == "still fine"
    [warning] = _cache_warnings(caplog)
    assert "unavailable" in warning
    assert "results come from PostgreSQL alone" in warning
    assert "s3cret-pw" not in caplog.text


async def test_a_hung_redis_times_out_and_postgres_answers(
    database_url: str,
    redis: RedisPeer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = await _finished_job(42)
    monkeypatch.setenv("REDIS_TIMEOUT", "0.2")
    caplog.set_level(logging.WARNING, logger=CACHE_LOGGER)
    with silent_server() as port:
        _point_redis_at(monkeypatch, f"redis://127.0.0.1:{port}/0")
        assert get_result(done).value == 42
        assert (await get_result_async(done)).value == 42
    [warning] = _cache_warnings(caplog)
    assert "Timeout" in warning


async def test_a_value_that_is_not_ours_is_ignored(
    database_url: str, redis: RedisPeer, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = await _finished_job("real")
    redis.client.set(redis.key(job_id), "\x80\x04pickled?")
    assert get_result(job_id).value == "real"
    assert "ignoring a non-JSON-object value" in caplog.text


async def test_without_redis_url_nothing_is_written_to_redis(
    database_url: str, redis: RedisPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_redis_at(monkeypatch, "")
    job_id = await _finished_job("pg only")
    assert get_result(job_id).value == "pg only"
    assert list(redis.client.scan_iter(f"{redis.prefix}:*")) == []
