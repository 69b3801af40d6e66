"""Results with real workers: the value, pending, failed: reason, unknown job —
the same answers from PostgreSQL alone and with the Redis cache in front."""

from __future__ import annotations

import psycopg
import pytest

from jobs.app import app
from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.errors import ResultTooLarge
from jobs.results.store import Result, State, get_result, get_result_async, store_result
from jobs.settings import get_settings
from tests.conftest import count, drain, queue_chunk
from tests.result_tasks import answer, boom, defer, flaky, odd, signup


async def answers(job_id: int) -> Result:
    """The sync and async APIs, asked twice each, agree (first from PostgreSQL,
    then — with Redis — from the cache they filled)."""
    first = get_result(job_id)
    assert [await get_result_async(job_id), get_result(job_id)] == [first, first]
    return first


@pytest.fixture(params=["postgres", "redis"])
def backend(request: pytest.FixtureRequest, database_url: str) -> str:
    """Each test runs without Redis, then with the cache in front (real Redis)."""
    if request.param == "redis":
        request.getfixturevalue("redis")
    return str(request.param)


# --- the answers -------------------------------------------------------------------


async def test_delivery_summary_is_the_result(backend: str, database_url: str, smtp: Sink) -> None:
    _, job_id = queue_chunk(database_url, 1)
    assert (await answers(job_id)).state is State.PENDING
    await drain()
    result = await answers(job_id)
    assert (result.state, result.value, result.task_name) == (
        State.SUCCEEDED,
        {"sent": 1, "failed": 0, "suppressed": 0},
        "email.deliver",
    )
    assert str(result) == 'succeeded: {"sent": 1, "failed": 0, "suppressed": 0}'
    assert result.finished_at is not None


async def test_returned_value_of_a_task_without_a_transaction(backend: str) -> None:
    job_id = await defer(answer, value={"total_users": 3, "names": ["Zoë", "Ann"]})
    await drain()
    result = await answers(job_id)
    assert result.state is State.SUCCEEDED
    assert result.value == {"total_users": 3, "names": ["Zoë", "Ann"]}


async def test_pending_until_a_worker_runs_it(backend: str) -> None:
    job_id = await defer(answer, value=1)
    result = await answers(job_id)
    assert (result.state, result.value, str(result)) == (State.PENDING, None, "pending")


async def test_failed_with_the_reason_of_the_last_attempt(backend: str) -> None:
    job_id = await defer(boom, message="the partner API said no")
    await drain()
    result = await answers(job_id)
    assert result.state is State.FAILED
    assert str(result) == "failed: ValueError: the partner API said no"
    assert result.task_name == "tests.results.boom"


async def test_unknown_job(backend: str) -> None:
    result = await answers(424242)
    assert (result.state, str(result)) == (State.UNKNOWN, "unknown job")


async def test_waiting_for_a_retry_is_pending_with_the_last_error_then_the_value(
    backend: str,
) -> None:
    job_id = await defer(flaky, value=[1, 2, 3])
    await drain(fast_forward=0)  # the first attempt fails; the retry is an hour away
    result = await answers(job_id)
    assert result.state is State.PENDING
    assert str(result) == "pending (last attempt failed: RuntimeError: first attempt fails)"
    await drain()  # time travel: the retry runs and succeeds
    result = await answers(job_id)
    assert (result.state, result.value, result.error) == (State.SUCCEEDED, [1, 2, 3], None)


async def test_cancelled_job(backend: str) -> None:
    job_id = await defer(answer, value=1)
    async with app.open_async():
        assert await app.job_manager.cancel_job_by_id_async(job_id)
    assert str(await answers(job_id)) == "cancelled"


async def test_answered_from_job_results_after_the_job_row_is_pruned(
    backend: str, database_url: str
) -> None:
    ok = await defer(answer, value={"n": 1})
    failed = await defer(boom, message="nope")
    await drain()
    with psycopg.connect(database_url) as conn:  # what a pruning maintenance task does
        conn.execute("DELETE FROM procrastinate_jobs")
    assert (await answers(ok)).value == {"n": 1}
    assert str(await answers(failed)) == "failed: ValueError: nope"


async def test_success_without_a_value_after_a_failed_attempt_still_reads_succeeded_when_pruned(
    backend: str, database_url: str
) -> None:
    job_id = await defer(flaky, value=None)
    await drain()
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM procrastinate_jobs")
    result = await answers(job_id)
    assert (result.state, result.value, result.error) == (State.SUCCEEDED, None, None)


# --- storing ------------------------------------------------------------------------


async def test_result_commits_with_the_tasks_own_writes(backend: str, database_url: str) -> None:
    job_id = await defer(signup, username="ann", summary={"created": 1})
    await drain()
    assert (await answers(job_id)).value == {"created": 1}
    assert count(database_url, "SELECT count(*) FROM users WHERE username = 'ann'") == 1


async def test_large_result_is_refused_and_rolls_back_the_tasks_writes(
    backend: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESULT_MAX_BYTES", "1000")
    get_settings.cache_clear()
    job_id = await defer(signup, username="bob", summary={"blob": "x" * 2000})
    await drain()
    result = await answers(job_id)
    assert result.state is State.FAILED
    assert result.error is not None
    assert result.error.startswith("ResultTooLarge: task result is 2011 bytes of JSON")
    assert "RESULT_MAX_BYTES=1000" in result.error
    assert count(database_url, "SELECT count(*) FROM users") == 0


async def test_large_returned_value_fails_the_job_with_the_reason(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESULT_MAX_BYTES", "100")
    get_settings.cache_clear()
    job_id = await defer(answer, value=["y" * 200])
    await drain()
    result = await answers(job_id)
    assert result.state is State.FAILED
    assert "over RESULT_MAX_BYTES=100" in str(result)


async def test_a_value_that_is_not_json_fails_the_job_with_the_reason(backend: str) -> None:
    job_id = await defer(odd)
    await drain()
    assert str(await answers(job_id)).startswith(
        "failed: ResultNotSerializable: a task result must be JSON-serializable"
    )


async def test_a_task_returning_nothing_succeeds_without_a_value(backend: str) -> None:
    job_id = await defer(answer, value=None)
    await drain()
    result = await answers(job_id)
    assert (result.state, result.value, str(result)) == (State.SUCCEEDED, None, "succeeded: null")


def test_store_result_never_commits(database_url: str) -> None:
    with session_factory(database_url)() as session:
        store_result(session, job_id=7, task_name="t", result={"a": 1})
        session.rollback()
    assert get_result(7).state is State.UNKNOWN


def test_store_result_refuses_before_writing(database_url: str) -> None:
    too_large = "z" * get_settings().RESULT_MAX_BYTES  # plus two quotes
    with (
        session_factory(database_url)() as session,
        session.begin(),
        pytest.raises(ResultTooLarge, match="RESULT_MAX_BYTES"),
    ):
        store_result(session, job_id=8, task_name="t", result=too_large)
    assert get_result(8).state is State.UNKNOWN
