"""`jobs status` and `jobs status --json` on a database seeded with known counts."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from jobs import cli


def _job(
    conn: psycopg.Connection,
    queue: str,
    task: str,
    status: str,
    events: tuple[tuple[str, str], ...] = (),
    *,
    worker: int | None = None,
    scheduled: str | None = None,
) -> int:
    """A job with exactly ``events``: (type, how long ago, e.g. '10 minutes')."""
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status, worker_id, scheduled_at)"
        " VALUES (%s, %s, %s, %s, now() + %s::interval) RETURNING id",
        [queue, task, status, worker, scheduled],
    ).fetchone()
    assert row is not None
    conn.execute("DELETE FROM procrastinate_events WHERE job_id = %s", [row[0]])
    for type_, ago in events:
        conn.execute(
            "INSERT INTO procrastinate_events (job_id, type, at) "
            "VALUES (%s, %s, now() - %s::interval)",
            [row[0], type_, ago],
        )
    return int(row[0])


def _email(conn: psycopg.Connection, n: int, status: str, ago: str) -> None:
    conn.execute(
        "INSERT INTO email_messages (idempotency_key, kind, to_address, template, status, "
        "created_at) VALUES (%s, 'welcome', 'a@example.com', 'welcome', %s, now() - %s::interval)",
        [f"seed:{n}", status, ago],
    )


def _seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        [alive] = conn.execute(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        ).fetchone() or [0]
        conn.execute(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '10 min')"
        )
        e, d = "email", "email.deliver"
        _job(conn, e, d, "todo", (("deferred", "5 minutes"),))  # the oldest due: lag 5 min
        _job(conn, e, d, "todo", (("deferred", "1 minute"),))
        _job(conn, e, d, "todo", (("deferred", "1 minute"),))
        _job(conn, e, d, "todo", (("deferred", "1 minute"),), scheduled="1 hour")  # not due
        _job(conn, e, d, "doing", (("started", "1 minute"),), worker=alive)
        _job(conn, e, d, "doing", (("started", "1 minute"),), worker=alive)
        for _ in range(4):
            _job(conn, e, d, "succeeded", (("succeeded", "10 minutes"),))
        for _ in range(2):
            _job(conn, e, d, "succeeded", (("succeeded", "3 hours"),))
        _job(conn, e, d, "failed", (("failed", "20 minutes"),))
        _job(conn, e, d, "succeeded", (("deferred_for_retry", "2 hours"), ("succeeded", "90 min")))
        _job(conn, e, d, "failed", (("failed", "30 hours"),))  # outside the 24 h window
        _job(conn, "default", "maintenance.recover_stalled", "succeeded", (("succeeded", "5 min"),))
        _job(conn, "default", "maintenance.prune", "todo", scheduled="-10 minutes")  # lag 10 min
        _email(conn, 1, "pending", "2 hours")
        _email(conn, 2, "pending", "0 seconds")
        for n in (3, 4, 5):
            _email(conn, n, "sent", "10 minutes")
        _email(conn, 6, "failed", "5 hours")
        _email(conn, 7, "sent", "2 days")


def _status(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(["status", *args]) == 0
    return capsys.readouterr().out


def _counts(ok: tuple[int, int], failed: tuple[int, int], retried: tuple[int, int]) -> Any:
    return {
        name: {"1h": pair[0], "24h": pair[1]}
        for name, pair in (("succeeded", ok), ("failed", failed), ("retried", retried))
    }


def test_status_json_has_the_known_counts(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(database_url)
    status = json.loads(_status(capsys, "--json"))

    default, email = status["queues"]
    assert 600 <= default.pop("oldest_due_seconds") < 3600
    assert default == {
        "queue": "default",
        "todo": 1,
        "due": 1,
        "doing": 0,
        "failed": 0,
        "outcomes": _counts((1, 1), (0, 0), (0, 0)),
    }
    assert 300 <= email.pop("oldest_due_seconds") < 600
    assert email == {
        "queue": "email",
        "todo": 4,
        "due": 3,
        "doing": 2,
        "failed": 2,
        "outcomes": _counts((4, 7), (1, 1), (0, 1)),
    }

    deliver, recover = status["tasks"]
    assert deliver["task"] == "email.deliver"
    assert deliver["outcomes"] == _counts((4, 7), (1, 1), (0, 1))
    assert deliver["failure_rate"] == {"1h": 0.2, "24h": 0.125}
    assert recover["task"] == "maintenance.recover_stalled"
    assert recover["failure_rate"] == {"1h": 0.0, "24h": 0.0}

    alive, dead = status["workers"]
    assert (alive["alive"], alive["running"]) == (True, 2)
    assert (dead["alive"], dead["running"]) == (False, 0)
    assert dead["seconds_since_heartbeat"] >= 600

    ledger = status["ledger"]
    assert ledger["pending"] == 2
    assert ledger["oldest_pending_seconds"] >= 7200
    assert ledger["created"] == {
        "1h": {"pending": 1, "sent": 3, "failed": 0},
        "24h": {"pending": 2, "sent": 3, "failed": 1},
    }
    assert status["promotion_runs"] == []


def test_status_screen(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(database_url)
    screen = _status(capsys)
    lines = screen.splitlines()
    assert any(line.split()[:4] == ["email", "4", "3", "2"] for line in lines)  # todo due doing
    assert "Workers: 1 alive (stalled after 1.0m without heartbeat)" in screen
    assert any("STALLED" in line for line in lines)
    assert any(line.split()[:1] == ["email.deliver"] and "20.0% | 12.5%" in line for line in lines)
    assert "Email ledger: 2 pending (oldest 2.0h)" in screen
    assert "Promotion runs\n  none yet" in screen
    assert len(lines) < 40  # one screen


def test_promotion_runs_are_shown_latest_first_with_their_counts(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO promotion_runs (id, campaign_id, period, total_users, queued,"
            " started_at, finished_at) SELECT n, c.id, now() - (n || ' day')::interval,"
            " 100 * n, 2, now(), CASE WHEN n = 1 THEN now() END"
            " FROM campaigns AS c, generate_series(1, 2) AS n WHERE c.name = 'default'"
        )
        conn.execute(
            "INSERT INTO email_messages (idempotency_key, kind, to_address, template,"
            " promotion_run_id) VALUES ('promotion:1:1', 'promotion', 'a@example.com',"
            " 'promotion', 1), ('promotion:1:2', 'promotion', 'b@example.com', 'promotion', 1)"
        )  # pending, then delivered as a worker records them
        conn.execute(
            "UPDATE email_messages SET status = CASE to_address WHEN 'a@example.com'"
            " THEN 'sent' ELSE 'failed' END"
        )
    runs = json.loads(_status(capsys, "--json"))["promotion_runs"]
    assert [(r["id"], r["campaign"], r["total_users"], r["sent"], r["failed"]) for r in runs] == [
        (2, "default", 200, 0, 0),
        (1, "default", 100, 1, 1),
    ]
    assert runs[0]["finished_at"] is None
    screen = _status(capsys)
    assert "Promotion runs (latest)" in screen
    assert any(line.split()[:2] == ["2", "default"] for line in screen.splitlines())
