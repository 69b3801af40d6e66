"""Test-only tasks (queue `test`), never shipped: registered on `jobs.app.app` when this
module is imported — by the tests, and by `python -m tests.worker_main` for subprocess
workers."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from jobs.app import app

TEST_QUEUE = "test"


def mark(marks: str, word: str) -> None:
    with Path(marks).open("a", encoding="utf-8") as file:
        file.write(f"{word} {os.getpid()}\n")


@app.task(name="test.block", queue=TEST_QUEUE)
async def block(marks: str, release: str) -> None:
    """Write `start`, wait until the file ``release`` exists, write `done`."""
    mark(marks, "start")
    # The release comes from another process: poll the file system.
    while not await asyncio.to_thread(os.path.exists, release):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    mark(marks, "done")


@app.task(name="test.kill_worker", queue=TEST_QUEUE)
def kill_worker(marks: str) -> None:
    """Write `start`, then SIGKILL the process running it: a job that kills its worker."""
    mark(marks, "start")
    os.kill(os.getpid(), signal.SIGKILL)
