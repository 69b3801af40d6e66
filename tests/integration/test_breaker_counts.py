"""The circuit breaker's counters (``promotion_run_counts``, kept by triggers on
``email_messages``) equal a count of each run's messages, whatever changes the rows;
and a check reads none of the run's messages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from jobs import cli
from jobs.db import async_session_factory, session_factory
from jobs.dev.sink import Sink
from jobs.feedback import breaker
from jobs.feedback.config import policy
from jobs.feedback.events import Event, record
from jobs.ops.queries import promotion_runs
from jobs.ops.retention import prune
from jobs.promotions.unsubscribe import unsubscribe_email
from jobs.settings import get_settings
from tests.conftest import drain, faults
from tests.integration.test_promotion import add_users, run

Counts = dict[int, tuple[int, ...]]

# What the breaker (sample, bounces, complaints) and the run listings (sent, failed,
# refused) counted before the counters: every message of the run.
COUNTED = """
    SELECT promotion_run_id,
           count(*) FILTER (WHERE status = 'sent' OR failure_kind = 'rejected'),
           count(*) FILTER (WHERE failure_kind = 'rejected' OR feedback = 'hard_bounce'),
           count(*) FILTER (WHERE feedback = 'complaint'),
           count(*) FILTER (WHERE status = 'sent'),
           count(*) FILTER (WHERE status = 'failed'),
           count(*) FILTER (WHERE failure_kind = 'rejected')
      FROM email_messages WHERE promotion_run_id IS NOT NULL GROUP BY 1
"""
KEPT = """
    SELECT run_id, sum(sample), sum(bounces), sum(complaints), sum(sent), sum(failed),
           sum(refused)
      FROM promotion_run_counts GROUP BY 1
"""


def _nonzero(rows: Iterable[Any]) -> Counts:
    counted = {int(run_id): tuple(int(n) for n in numbers) for run_id, *numbers in rows}
    return {run_id: numbers for run_id, numbers in counted.items() if any(numbers)}


def counts(url: str) -> Counts:
    """The breaker's counts per run (sample, bounces, complaints), with every counter
    asserted equal to a count of the messages."""
    with psycopg.connect(url) as conn:
        counted, kept = _nonzero(conn.execute(COUNTED)), _nonzero(conn.execute(KEPT))
    assert kept == counted
    return {run_id: numbers[:3] for run_id, numbers in kept.items() if any(numbers[:3])}


@pytest.fixture(autouse=True)
def _promotions(env: Any) -> None:
    env(SECRET_KEY="test-secret-key-0123456789", PROMOTION_CRON="0 0 1 1 *", MAIL_MAX_ATTEMPTS="2")


def _ids(url: str, run_id: int) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT to_address, id FROM email_messages WHERE promotion_run_id = %s", (run_id,)
        )
        return {address.split("@")[0]: int(i) for address, i in rows}


async def _feedback(url: str, ledger_id: int, kind: str, event_id: str) -> None:
    event = Event("webhook", event_id, kind, None, raw="{}", ledger_id=ledger_id)
    async with async_session_factory(url)() as session, session.begin():
        await record(session, event, policy(get_settings()))


async def _retention(url: str) -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    await prune(async_session_factory(url), jobs_before=tomorrow, contexts_before=tomorrow)


def _status(url: str, run_id: int) -> dict[str, tuple[str, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT to_address, status, failure_kind FROM email_messages"
            " WHERE promotion_run_id = %s",
            (run_id,),
        )
        return {address.split("@")[0]: (status, kind) for address, status, kind in rows}


def test_the_counters_follow_every_operation_on_a_run(
    database_url: str, smtp: Sink, env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = database_url
    add_users(url, 8)
    assert cli.main(["promote"]) == 0
    assert counts(url) == {}  # pending rows count nothing

    # Delivery: two 5xx refusals; the others get 421s until their retries run out.
    for n in (0, 1):
        faults(smtp).refuse[f"u{n}@example.com"] = "550 5.1.1 no such user"
    faults(smtp).data_replies.extend(["421 4.7.0 server busy"] * 100)
    run(drain(fast_forward=5))
    status = _status(url, 1)
    assert status["u0"] == ("failed", "rejected")
    assert status["u2"] == ("failed", "transient_exhausted")
    assert counts(url) == {1: (2, 2, 0)}

    # An operator's re-queue: the transient failures go back to pending, then are sent.
    faults(smtp).data_replies.clear()
    assert cli.main(["retry-failed"]) == 0
    assert _status(url, 1)["u2"] == ("pending", None)
    assert counts(url) == {1: (2, 2, 0)}
    run(drain())
    assert counts(url) == {1: (8, 2, 0)}

    # Feedback: a hard bounce, complaints (one replacing a hard bounce), a soft bounce,
    # and a hard bounce on a row refused already (a bounce once).
    ids = _ids(url, 1)
    for n, (user, kind) in enumerate(
        [
            ("u2", "hard_bounce"),
            ("u3", "complaint"),
            ("u2", "complaint"),
            ("u0", "hard_bounce"),
            ("u4", "soft_bounce"),
            ("u5", "hard_bounce"),
        ]
    ):
        run(_feedback(url, ids[user], kind, f"event-{n}"))
        counts(url)
    assert counts(url) == {1: (8, 3, 2)}

    # Retention drops the contexts (no count changes); rows deleted by hand leave the counts.
    run(_retention(url))
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM email_messages WHERE id = ANY(%s)", ([ids["u0"], ids["u3"]],))
    assert counts(url) == {1: (6, 2, 1)}

    # A second run: an unsubscribe suppresses a pending row, a cancel fails the rest.
    env(PROMOTION_CRON="0 0 2 1 *")
    assert cli.main(["promote"]) == 0
    with session_factory(url)() as session, session.begin():
        unsubscribe_email(session, "u6@example.com")
    assert cli.main(["promote", "--cancel", "2"]) == 0
    assert set(_status(url, 2).values()) == {("suppressed", None), ("failed", "cancelled")}
    assert counts(url) == {1: (6, 2, 1)}

    # Deleting a run detaches its rows; its counters go with it.
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM promotion_runs WHERE id = 1")
    assert counts(url) == {}
    capsys.readouterr()


ROWS = 12  # rows 0-5 in run 1, 6-9 in run 2, 10-11 in no run
RUN_OF = [1] * 6 + [2] * 4 + [None] * 2
indexes = st.sets(st.integers(0, ROWS - 1), min_size=1)
changes = st.one_of(
    st.tuples(
        st.just("set"),
        indexes,
        st.sampled_from(["pending", "sent", "failed", "suppressed"]),
        st.sampled_from([None, "rejected", "transient_exhausted", "cancelled", "invalid"]),
        st.sampled_from([None, "hard_bounce", "complaint", "soft_bounce"]),
    ),
    st.tuples(st.just("move"), indexes, st.sampled_from([None, 1, 2])),
    st.tuples(st.just("delete"), indexes),
)
# Each change: its statement, the connection it runs on (two backends: two shards, as
# two workers), and whether its transaction commits.
steps = st.lists(st.tuples(changes, st.integers(0, 1), st.booleans()), max_size=8)


def _reset(conn: psycopg.Connection[Any]) -> list[int]:
    """The example's rows, pending, with no feedback; counters at zero."""
    conn.execute("DELETE FROM email_messages")
    conn.execute("TRUNCATE promotion_run_counts")
    ids = []
    for n, run_id in enumerate(RUN_OF):
        row = conn.execute(
            "INSERT INTO email_messages (idempotency_key, kind, to_address, template,"
            " promotion_run_id) VALUES (%s, 'promotion', %s, 'promotion', %s) RETURNING id",
            (f"k{n}", f"r{n}@example.com", run_id),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    conn.commit()
    return ids


def _apply(conn: psycopg.Connection[Any], ids: list[int], change: tuple[Any, ...]) -> None:
    chosen = [ids[i] for i in sorted(change[1])]
    if change[0] == "set":
        conn.execute(
            "UPDATE email_messages SET status = %s, failure_kind = %s, feedback = %s"
            " WHERE id = ANY(%s)",
            (*change[2:], chosen),
        )
    elif change[0] == "move":
        conn.execute(
            "UPDATE email_messages SET promotion_run_id = %s WHERE id = ANY(%s)",
            (change[2], chosen),
        )
    else:
        conn.execute("DELETE FROM email_messages WHERE id = ANY(%s)", (chosen,))


def _runs(url: str, n: int) -> None:
    """A campaign (id 1) with promotion runs 1..``n``."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO campaigns (name, subject, title, content, link_path)"
            " VALUES ('c', 's', 't', 'c', '/')"
        )
        conn.execute(
            "INSERT INTO promotion_runs (campaign_id, period)"
            " SELECT 1, date '2026-01-01' + g FROM generate_series(0, %s - 1) AS g",
            (n,),
        )


@pytest.fixture
def two_runs(database_url: str) -> str:
    _runs(database_url, 2)
    return database_url


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_the_counters_equal_a_count_after_any_changes(
    two_runs: str, steps: list[tuple[tuple[Any, ...], int, bool]]
) -> None:
    with psycopg.connect(two_runs) as first, psycopg.connect(two_runs) as second:
        ids = _reset(first)
        for change, on, commit in steps:
            conn = (first, second)[on]
            _apply(conn, ids, change)
            if commit:
                conn.commit()
            else:
                conn.rollback()
    counts(two_runs)


STATS = text(
    "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
    " WHERE relname = 'email_messages'"
)


def test_a_check_reads_no_message_of_the_run(database_url: str) -> None:
    """The table's scans in this transaction (``pg_stat_xact_user_tables``) before and
    after a check of a run of thousands of rows: a count of its rows would scan it."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO campaigns (name, subject, title, content, link_path)"
            " VALUES ('c', 's', 't', 'c', '/')"
        )
        conn.execute("INSERT INTO promotion_runs (campaign_id, period) VALUES (1, now())")
        conn.execute(
            "INSERT INTO email_messages (idempotency_key, kind, to_address, template,"
            " promotion_run_id) SELECT 'k' || g, 'promotion', 'r' || g || '@example.com',"
            " 'promotion', 1 FROM generate_series(1, 3000) AS g"
        )
        conn.execute("UPDATE email_messages SET status = 'sent' WHERE id % 2 = 0")
        conn.execute("ANALYZE email_messages")
    thresholds = breaker.Thresholds(max_bounce_rate=0.05, max_complaint_rate=0.01, min_sample=10)

    async def scans() -> list[tuple[int, int]]:
        """(sequential scans, index scans) before, after check_runs, after check_messages."""
        seen: list[tuple[int, int]] = []
        async with async_session_factory(database_url)() as session, session.begin():
            seen.append(tuple((await session.execute(STATS)).one()))
            assert await breaker.check_runs(session, [1], thresholds) == []
            seen.append(tuple((await session.execute(STATS)).one()))
            assert await breaker.check_messages(session, [2], thresholds) == []
            seen.append(tuple((await session.execute(STATS)).one()))
        return seen

    before, after_runs, after_messages = run(scans())
    assert after_runs == before  # check_runs: no scan of email_messages at all
    assert after_messages[0] == before[0]  # check_messages: no sequential scan,
    assert after_messages[1] - after_runs[1] <= 1  # one look-up of the row it names
    assert counts(database_url) == {1: (1500, 0, 0)}
    with session_factory(database_url)() as session, session.begin():
        listed = session.execute(STATS).one()
        (shown,) = promotion_runs(session)  # `jobs status`, /metrics, the dashboard
        assert session.execute(STATS).one() == listed  # read off the counters too
    assert (shown["sent"], shown["failed"], shown["refused"]) == (1500, 0, 0)


def test_the_migration_fills_in_the_counts_of_existing_runs(database_url: str) -> None:
    from alembic import command

    from jobs.db.migrations import alembic_config, migrate

    command.downgrade(alembic_config(database_url), "0016")
    _runs(database_url, 3)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO email_messages (idempotency_key, kind, to_address, template,"
            " promotion_run_id, status, failure_kind, feedback)"
            " SELECT 'k' || g, 'promotion', 'r' || g || '@example.com', 'promotion',"
            " CASE WHEN g % 7 = 0 THEN NULL ELSE 1 + g % 2 END,"
            " (ARRAY['pending', 'sent', 'failed', 'sent'])[1 + g % 4],"
            " CASE WHEN g % 4 = 2 THEN (ARRAY['rejected', 'cancelled'])[1 + g % 3 % 2] END,"
            " (ARRAY[NULL, 'hard_bounce', 'complaint', 'soft_bounce', NULL])[1 + g % 5]"
            " FROM generate_series(1, 200) AS g"
        )
    migrate(database_url)
    assert set(counts(database_url)) == {1, 2}  # run 3 has no rows


def test_rows_moved_out_of_a_run_or_into_one_are_counted_where_they_go(two_runs: str) -> None:
    with psycopg.connect(two_runs, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO email_messages (idempotency_key, kind, to_address, template,"
            " promotion_run_id) SELECT 'k' || g, 'promotion', 'r' || g || '@example.com',"
            " 'promotion', 1 FROM generate_series(1, 6) AS g"
        )
        conn.execute("UPDATE email_messages SET status = 'sent'")
        assert counts(two_runs) == {1: (6, 0, 0)}
        conn.execute("UPDATE email_messages SET promotion_run_id = NULL WHERE id <= 2")  # out
        assert counts(two_runs) == {1: (4, 0, 0)}
        conn.execute("UPDATE email_messages SET promotion_run_id = 2 WHERE id <= 3")  # in, across
        assert counts(two_runs) == {1: (3, 0, 0), 2: (3, 0, 0)}
        with conn.transaction():  # rows of no run, then of a run, in one transaction
            conn.execute("UPDATE email_messages SET attempts = 1 WHERE promotion_run_id IS NULL")
            conn.execute("UPDATE email_messages SET status = 'failed' WHERE id = 4")
        assert counts(two_runs) == {1: (2, 0, 0), 2: (3, 0, 0)}
