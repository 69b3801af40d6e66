"""The README's Python blocks run as written, in order, against a real database."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from jobs import get_result
from jobs.app import app
from jobs.dev.sink import Sink
from jobs.results import State
from tests.conftest import count, drain

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    blocks = python_blocks()
    assert len(blocks) == 3
    assert all("import" in block for block in blocks)


async def test_every_python_block_runs_as_written(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    enqueue, read, store = python_blocks()
    namespace: dict[str, Any] = {}

    exec(compile(enqueue, "README.md", "exec"), namespace)
    assert count(database_url, "SELECT count(*) FROM users") == 1
    assert count(database_url, "SELECT count(*) FROM email_messages") == 2
    assert count(database_url, "SELECT count(*) FROM procrastinate_jobs") == 2

    # `job_id` is what the reader has in hand: here, the welcome email's job.
    namespace["job_id"] = count(database_url, "SELECT min(id) FROM procrastinate_jobs")
    exec(compile(read, "README.md", "exec"), namespace)
    assert capsys.readouterr().out.strip() == "pending"

    exec(compile(store, "README.md", "exec"), namespace)
    try:
        async with app.open_async():
            job_id = await app.tasks["promotion.send"].defer_async()
        await drain()
    finally:
        app.tasks.pop("promotion.send", None)
    result = get_result(job_id)
    assert result.state is State.SUCCEEDED
    assert result.value == {"sent": 250, "failed": 1}
    assert len(smtp.messages) == 2  # the welcome email and the reset, once each
