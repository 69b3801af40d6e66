"""`jobs worker` says where it runs and what it serves; `jobs status` and the dashboard
show it, and warn of a queue with due jobs that no live worker serves."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from jobs import cli
from tests.conftest import count, queue_chunk
from tests.workers import spawn, wait_until


def _recorded(url: str) -> list[tuple[str, int, list[str]]]:
    with psycopg.connect(url) as conn:
        return [
            (str(host), int(pid), list(queues))
            for host, pid, queues in conn.execute("SELECT host, pid, queues FROM worker_info")
        ]


def test_status_shows_each_worker_and_the_queue_nobody_serves(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue_chunk(database_url, 1)  # due in the email queue
    worker = spawn(
        "worker", "--queues", "default", log=tmp_path / "w.log", env={"WORKER_STALLED_AFTER": "30"}
    )
    try:
        wait_until(lambda: bool(_recorded(database_url)), "the worker's worker_info row")
        assert _recorded(database_url) == [(socket.gethostname(), worker.pid, ["default"])]
        assert cli.main(["status"]) == 0
        out = capsys.readouterr().out
        assert f"{worker.pid}  default" in out
        assert "WARNING: queue 'email' has due jobs and no live worker serves it" in out
        assert "'default' has due" not in out
    finally:
        worker.terminate()
        assert worker.wait(timeout=60) == 0
    # a worker that stops takes its row along
    assert count(database_url, "SELECT count(*) FROM worker_info") == 0
