"""Real worker processes for the operations tests: start, watch, signal, wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from jobs.dev.sink import free_port

ROOT = Path(__file__).resolve().parent.parent
PATIENCE = 60.0  # hang guard for waits, never an assertion on speed


def spawn(
    *args: str, log: Path, env: dict[str, str] | None = None, http_port: int = 0
) -> subprocess.Popen[bytes]:
    """``python -m tests.worker_main <args>`` with stderr to ``log``."""
    environment = {
        **os.environ,
        "WORKER_HTTP_PORT": str(http_port),
        "WORKER_STALLED_AFTER": "1",
        **(env or {}),
    }
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.worker_main", *args],
            cwd=ROOT,
            env=environment,
            stdout=err,
            stderr=err,
        )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def marks(path: Path) -> list[str]:
    """The words a test task wrote (`start`, `done`), one per line."""
    if not path.exists():
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def http_port() -> int:
    return free_port()
