"""The suppression list in delivery, the circuit breaker on promotion runs, the bulk
stream and per-domain budgets."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
import pytest

from jobs import cli
from jobs.db import session_factory
from jobs.dev.sink import Sink
from jobs.mail.enqueue import enqueue_email
from jobs.results.store import read_result
from jobs.tasks import BULK_PRIORITY, DELIVER_TASK, TRANSACTIONAL_PRIORITY
from jobs.worker.run import run_worker
from tests.conftest import count, drain, faults, queue_chunk
from tests.integration.test_promotion import add_users, drain_all, recipients, run
from tests.smtp import FaultyHandler

SECRET = "test-secret-key-0123456789"


@pytest.fixture(autouse=True)
def _secret(env: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.settings import get_settings

    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("PROMOTION_CRON", "0 0 1 1 *")
    get_settings.cache_clear()


def _welcome(url: str, to: str) -> int:
    with session_factory(url)() as session, session.begin():
        return enqueue_email(session, to=to, template="welcome", context={"username": "x"}).id


def _row(url: str, ledger_id: int) -> tuple[str, str | None]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, last_error FROM email_messages WHERE id = %s", (ledger_id,)
        ).fetchone()
    assert row is not None
    return str(row[0]), row[1]


def _suppressed(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT address, reason FROM suppressions").fetchall())


def test_suppressed_addresses_are_skipped_by_promotions_and_transactional_mail(
    database_url: str, smtp: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 4)
    assert cli.main(["suppressions", "add", "U1@Example.com"]) == 0
    assert cli.main(["suppressions", "add", "u2@example.com", "--reason", "complaint"]) == 0
    assert cli.main(["suppressions", "list"]) == 0
    listed = capsys.readouterr().out
    assert "u1@example.com" in listed
    assert "complaint" in listed
    assert "2 suppressed" in listed

    assert cli.main(["promote"]) == 0
    drain_all(database_url)
    assert recipients(smtp) == Counter({"u0@example.com": 1, "u3@example.com": 1})

    # Transactional: a manual entry stops it, a complaint does not.
    manual, complained = (
        _welcome(database_url, "u1@example.com"),
        _welcome(database_url, "u2@example.com"),
    )
    drain_all(database_url)
    status, reason = _row(database_url, manual)
    assert status == "suppressed"
    assert reason is not None
    assert "suppression list (manual)" in reason
    assert _row(database_url, complained)[0] == "sent"

    # A refusal that says "no such mailbox" suppresses; a policy refusal does not.
    faults(smtp).refuse["gone@example.com"] = "550 5.1.1 no such user"
    faults(smtp).refuse["blocked@example.com"] = "550 5.7.1 rejected by policy"
    for address in ("gone@example.com", "blocked@example.com"):
        _welcome(database_url, address)
    drain_all(database_url)
    assert "gone@example.com" in _suppressed(database_url)
    assert "blocked@example.com" not in _suppressed(database_url)

    assert cli.main(["suppressions", "remove", "u1@example.com"]) == 0
    assert cli.main(["suppressions", "remove", "u1@example.com"]) == 1  # not listed any more
    again = _welcome(database_url, "u1+again@example.com")
    drain_all(database_url)
    assert _row(database_url, again)[0] == "sent"


RUN = "SELECT {} FROM promotion_runs WHERE id = 1"
PENDING = "SELECT count(*) FROM email_messages WHERE status = 'pending'"


def test_a_run_that_bounces_past_the_limit_pauses_until_resumed(
    database_url: str,
    smtp: Sink,
    env: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jobs.settings import get_settings

    monkeypatch.setenv("PROMOTION_CHUNK_SIZE", "5")
    monkeypatch.setenv("PROMOTION_BREAKER_MIN_SAMPLE", "5")
    get_settings.cache_clear()
    add_users(database_url, 20)
    for n in range(5):  # the first chunk bounces entirely: 100% > 5%
        faults(smtp).refuse[f"u{n}@example.com"] = "550 5.1.1 no such user"
    assert cli.main(["promote"]) == 0
    run(drain(concurrency=1))  # one chunk after the other, as the breaker sees them

    assert len(smtp.messages) == 0
    assert count(database_url, RUN.format("count(paused_at)")) == 1
    assert (
        count(database_url, "SELECT count(*) FROM suppressions WHERE reason = 'hard_bounce'") == 5
    )
    assert count(database_url, PENDING) == 15  # held, not failed
    capsys.readouterr()
    assert cli.main(["status"]) == 0
    assert "paused" in capsys.readouterr().out

    faults(smtp).refuse.clear()
    assert cli.main(["promote", "--resume", "1"]) == 0
    assert "15 pending email(s) queued again" in capsys.readouterr().out
    drain_all(database_url)
    assert len(smtp.messages) == 15  # the old bounces are the new baseline
    assert count(database_url, RUN.format("count(paused_at)")) == 0
    assert count(database_url, PENDING) == 0


def test_a_cancelled_run_fails_its_pending_rows(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    add_users(database_url, 3)
    assert cli.main(["promote"]) == 0
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE promotion_runs SET paused_at = now(), pause_reason = 'test'")
    assert cli.main(["promote", "--cancel", "1"]) == 0
    assert "3 pending email(s) will not be sent" in capsys.readouterr().out
    assert (
        count(database_url, "SELECT count(*) FROM email_messages WHERE failure_kind = 'cancelled'")
        == 3
    )
    assert cli.main(["promote", "--resume", "1"]) == 2  # cancelled for good


def test_with_a_bulk_stream_promotions_go_to_their_own_server(
    database_url: str, smtp: Sink, env: Any
) -> None:
    with Sink(FaultyHandler()) as bulk:
        env(
            MAIL_BULK_SERVER=bulk.host,
            MAIL_BULK_PORT=str(bulk.port),
            MAIL_BULK_FROM="news@example.com",
        )
        add_users(database_url, 3)
        assert cli.main(["promote"]) == 0
        welcome = _welcome(database_url, "new@example.com")
        drain_all(database_url)
        assert _row(database_url, welcome)[0] == "sent"
        assert recipients(bulk) == Counter({f"u{n}@example.com": 1 for n in range(3)})
        assert {str(m["From"]) for m in faults(bulk).parsed()} == {"jobs <news@example.com>"}
    assert recipients(smtp) == Counter({"new@example.com": 1})


def test_a_receiver_asking_to_slow_down_lowers_its_domain_budget(
    database_url: str, smtp: Sink, env: Any
) -> None:
    env(MAIL_DOMAIN_RATE_LIMITS="slow.example=50")
    faults(smtp).data_replies.append("421 4.7.0 too many messages, slow down")
    first = _welcome(database_url, "a@slow.example")
    run(drain(fast_forward=0))
    assert _row(database_url, first)[0] == "pending"  # not failed, not counted as tried
    assert count(database_url, "SELECT attempts FROM email_messages") == 0
    slowed = "SELECT count(*) FROM mail_rate_limits WHERE slowed_until > now()"
    assert count(database_url, slowed) == 1
    drain_all(database_url)  # the retry goes through, on the lowered budget
    assert _row(database_url, first)[0] == "sent"


def _deliveries(url: str) -> list[tuple[str, int, int, bool, list[int]]]:
    """Each delivery job: status, attempts, priority, scheduled in the future, its ids."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT status, attempts, priority, scheduled_at > now(), args->'message_ids'"
            " FROM procrastinate_jobs WHERE task_name = %s ORDER BY id",
            (DELIVER_TASK,),
        ).fetchall()
    return [(str(s), int(a), int(p), bool(later), list(ids)) for s, a, p, later, ids in rows]


def _emails(outcome: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("jobs_emails_total", {"outcome": outcome}) or 0.0


def test_a_throttled_email_costs_its_job_no_attempt(
    database_url: str, smtp: Sink, env: Any
) -> None:
    env(MAIL_DOMAIN_RATE_LIMITS="slow.example=50", MAIL_MAX_ATTEMPTS="1")
    faults(smtp).data_replies.append("421 4.7.0 too many messages, slow down")
    first = _welcome(database_url, "a@slow.example")
    deferred = _emails("deferred")
    run(run_worker(drain=True))  # the jobs due now, no time travel
    assert _row(database_url, first)[0] == "pending"  # not failed on the only attempt
    assert _emails("deferred") == deferred + 1  # not tried, to be sent later
    [ran, again] = _deliveries(database_url)
    assert ran[0] == "succeeded"
    assert again == ("todo", 0, TRANSACTIONAL_PRIORITY, True, [first])  # a few seconds later
    job = count(database_url, "SELECT min(id) FROM procrastinate_jobs")
    with session_factory(database_url)() as session:
        assert read_result(session, job).value == {"sent": 0, "failed": 0, "suppressed": 0}
    drain_all(database_url)
    assert _row(database_url, first)[0] == "sent"
    assert recipients(smtp) == Counter({"a@slow.example": 1})
    assert {job[0] for job in _deliveries(database_url)} == {"succeeded"}


def test_a_throttled_email_goes_with_its_jobs_retry_when_another_is_deferred(
    database_url: str, smtp: Sink, env: Any
) -> None:
    env(MAIL_DOMAIN_RATE_LIMITS="example.com=50", MAIL_MAX_ATTEMPTS="3")
    faults(smtp).refuse["user1@example.com"] = "421 4.7.0 too many messages, slow down"
    faults(smtp).refuse["user2@example.com"] = "450 4.2.0 greylisted, try again later"
    ids = queue_chunk(database_url, 3)[0]
    run(run_worker(drain=True))
    assert [_row(database_url, i)[0] for i in ids] == ["sent", "pending", "pending"]
    assert _deliveries(database_url) == [("todo", 1, BULK_PRIORITY, True, ids)]  # the retry
    faults(smtp).refuse.clear()
    drain_all(database_url)
    assert [_row(database_url, i)[0] for i in ids] == ["sent"] * 3
    assert recipients(smtp) == Counter({f"user{i}@example.com": 1 for i in range(3)})
    assert [job[0] for job in _deliveries(database_url)] == ["succeeded"]


def test_the_final_attempt_fails_a_deferred_email_but_not_a_throttled_one(
    database_url: str, smtp: Sink, env: Any
) -> None:
    env(MAIL_DOMAIN_RATE_LIMITS="example.com=50", MAIL_MAX_ATTEMPTS="1")
    faults(smtp).refuse["user1@example.com"] = "421 4.7.0 too many messages, slow down"
    faults(smtp).refuse["user2@example.com"] = "450 4.2.0 greylisted, try again later"
    ids = queue_chunk(database_url, 3)[0]
    run(run_worker(drain=True))
    assert [_row(database_url, i)[0] for i in ids] == ["sent", "pending", "failed"]
    [ran, again] = _deliveries(database_url)
    assert ran[0] == "failed"  # its deferred email is exhausted
    assert again == ("todo", 0, BULK_PRIORITY, True, [ids[1]])  # same priority, later
    faults(smtp).refuse.clear()
    drain_all(database_url)
    assert [_row(database_url, i)[0] for i in ids] == ["sent", "sent", "failed"]
    assert recipients(smtp) == Counter({"user0@example.com": 1, "user1@example.com": 1})


def test_server_trouble_on_the_final_attempt_leaves_a_throttled_email_to_its_new_job(
    database_url: str, smtp: Sink, env: Any
) -> None:
    env(MAIL_DOMAIN_RATE_LIMITS="example.com=50", MAIL_MAX_ATTEMPTS="1")
    faults(smtp).refuse["user1@example.com"] = "421 4.7.0 too many messages, slow down"
    faults(smtp).refuse["user2@example.com"] = "421 4.3.2 shutting down"  # the server's trouble
    ids = queue_chunk(database_url, 3)[0]
    run(run_worker(drain=True))
    states = [_row(database_url, i)[0] for i in ids]
    assert states[0] in ("sent", "failed")  # sent, or stopped by the trouble and given up
    assert states[1:] == ["pending", "failed"]
    [ran, again] = _deliveries(database_url)
    assert ran[0] == "failed"
    assert again == ("todo", 0, BULK_PRIORITY, True, [ids[1]])
    faults(smtp).refuse.clear()
    drain_all(database_url)
    assert _row(database_url, ids[1])[0] == "sent"
    assert recipients(smtp)["user1@example.com"] == 1


def _throttled_since(url: str) -> list[str | None]:
    """Each delivery job's ``throttled_since`` argument, oldest job first."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT args->>'throttled_since' FROM procrastinate_jobs WHERE task_name = %s"
            " ORDER BY id",
            (DELIVER_TASK,),
        ).fetchall()
    return [since for (since,) in rows]


def test_a_receiver_that_keeps_asking_to_slow_down_fails_the_email_in_the_end(
    database_url: str, smtp: Sink, env: Any
) -> None:
    env(MAIL_DOMAIN_RATE_LIMITS="slow.example=50", MAIL_MAX_ATTEMPTS="3")  # window 10 + 20 s
    faults(smtp).refuse["a@slow.example"] = "421 4.7.0 too many messages, slow down"
    first = _welcome(database_url, "a@slow.example")
    run(run_worker(drain=True))
    [none, since] = _throttled_since(database_url)
    assert none is None
    assert since is not None  # when the receiver first asked
    run(drain(fast_forward=1))  # asked again within the window: a new job, the same time
    assert _row(database_url, first)[0] == "pending"
    assert _throttled_since(database_url) == [None, since, since]
    with psycopg.connect(database_url) as conn:  # the receiver asked 31 s ago
        conn.execute(
            "UPDATE procrastinate_jobs SET args = jsonb_set(args, '{throttled_since}',"
            " to_jsonb((now() - interval '31 s')::text)) WHERE args ? 'throttled_since'"
        )
    drain_all(database_url)
    status, reason = _row(database_url, first)
    assert status == "failed"
    assert reason is not None
    assert "asked to slow down since" in reason
    assert recipients(smtp) == Counter()
    assert {job[0] for job in _deliveries(database_url)} == {"succeeded"}
