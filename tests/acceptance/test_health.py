"""`/healthz` of a real worker: 200 while its loop and database answer, 503 after."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from jobs import cli
from jobs.settings import get_settings
from tests.workers import get, http_port, spawn, wait_until


def test_healthz_goes_503_when_the_database_goes_away(
    server_url: str, database_url: str, tmp_path: Path
) -> None:
    port = http_port()
    worker = spawn(
        "worker",
        "--queues",
        "email",
        log=tmp_path / "w.log",
        http_port=port,
        env={"WORKER_DB_OUTAGE_LIMIT": "15"},  # longer than one health probe (5 s)
    )
    url = f"http://127.0.0.1:{port}/healthz"
    seen: list[tuple[int, str]] = []

    def answered(code: int) -> bool:
        try:
            seen.append(get(url))
        except OSError:
            assert worker.poll() is None, "the worker exited before answering"
            return False
        return seen[-1][0] == code

    try:
        wait_until(lambda: answered(200), "the worker to be healthy")
        name = urlsplit(database_url).path.lstrip("/")
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        wait_until(lambda: answered(503), "/healthz to report the lost database")
        # It waits WORKER_DB_OUTAGE_LIMIT for the database, then gives up with one line.
        assert worker.wait(timeout=120) == 2
    finally:
        worker.kill()
        worker.wait(timeout=120)
    assert seen[-1][1].startswith(("database", "the database")), seen[-1]
    errors = [ln for ln in (tmp_path / "w.log").read_text().splitlines() if "jobs: error" in ln]
    assert errors, "no one-line error"
    assert errors[-1].startswith("jobs: error: no PostgreSQL at ")
    assert "(WORKER_DB_OUTAGE_LIMIT)" in errors[-1]


def test_healthcheck_command_asks_the_local_worker(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = http_port()
    monkeypatch.setenv("WORKER_HTTP_PORT", str(port))
    get_settings.cache_clear()
    assert cli.main(["healthcheck", "--timeout", "2"]) == 1  # nobody listens yet
    worker = spawn("worker", "--queues", "default", log=tmp_path / "w.log", http_port=port)
    try:
        wait_until(lambda: cli.main(["healthcheck"]) == 0, "the healthcheck to pass")
    finally:
        worker.terminate()
        assert worker.wait(timeout=120) == 0
