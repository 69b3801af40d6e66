"""Tasks that only the results tests defer (registered on the real app, names ``tests.*``)."""

from __future__ import annotations

from typing import Any

from procrastinate import JobContext, RetryStrategy

from jobs import db
from jobs.app import app
from jobs.models import User
from jobs.results.store import store_result_async
from jobs.settings import get_settings


@app.task(name="tests.results.answer")
async def answer(value: Any) -> Any:
    """No transaction of its own: the worker middleware stores what it returns."""
    return value


@app.task(name="tests.results.odd")
async def odd() -> Any:
    """Returns something JSON cannot hold."""
    return {"when": {1, 2}}


@app.task(name="tests.results.boom", retry=RetryStrategy(max_attempts=1, wait=60))
def boom(message: str) -> None:
    """A sync task failing on both of its attempts."""
    raise ValueError(message)


@app.task(
    name="tests.results.flaky", pass_context=True, retry=RetryStrategy(max_attempts=1, wait=3600)
)
async def flaky(context: JobContext, value: Any) -> Any:
    """Fails its first attempt (retry in an hour), succeeds on the second."""
    if context.job.attempts == 0:
        raise RuntimeError("first attempt fails")
    return value


@app.task(name="tests.results.signup", pass_context=True)
async def signup(context: JobContext, username: str, summary: Any) -> Any:
    """One transaction: a user row, then the result, both or neither."""
    sessions = db.async_session_factory(db.database_url(get_settings()))
    async with sessions() as session, session.begin():
        session.add(User(email=f"{username}@example.com", username=username))
        await store_result_async(
            session, job_id=context.job.id, task_name="tests.results.signup", result=summary
        )
    return summary


async def defer(task: Any, **kwargs: Any) -> int:
    async with app.open_async():
        return int(await task.defer_async(**kwargs))
