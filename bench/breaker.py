"""The circuit breaker's counters: what their triggers cost the bulk path, and a check.

    python -m bench.breaker [--emails N] [--batch B] [--rounds R]

Seeds pending promotion rows (their context and headers as the fan-out writes
them) and transactional ones, then records them ``sent``, with the triggers of
migration 0017 present and dropped in turn (a disabled trigger would still make
PostgreSQL keep the transition tables):

- in the server, one DO block: B rows per UPDATE ... FROM unnest (what
  `jobs.mail.ledger.record` sends) and one transactional row per UPDATE, a
  COMMIT after each, 20 of each between changes; the time of each UPDATE;
- through `jobs.mail.ledger.record`, one transaction per batch, R rounds each
  way: the database backend's CPU time per email, from /proc (10 ms ticks, and
  the other work on the machine shows: read it as a second opinion).

Then the time of a check of a run of N rows, the old count and `check_runs`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime

import psycopg
from sqlalchemy import text

from bench.cpu import cpu_seconds
from bench.database import fresh_database
from jobs.db import async_session_factory, dispose_engines
from jobs.feedback.breaker import Thresholds, check_runs
from jobs.mail import ledger
from jobs.models import EmailStatus

TRIGGERS = ("promotion_run_counts_on_update", "promotion_run_counts_on_delete")
OLD_COUNTS = """
    SELECT count(*) FILTER (WHERE status = 'sent' OR failure_kind = 'rejected'),
           count(*) FILTER (WHERE failure_kind = 'rejected' OR feedback = 'hard_bounce'),
           count(*) FILTER (WHERE feedback = 'complaint')
      FROM email_messages WHERE promotion_run_id = 1
"""


def seed(url: str, promotions: int, transactional: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO campaigns (name, subject, title, content, link_path)"
            " VALUES ('bench', 'News', 'News', 'Hello', '/')"
        )
        conn.execute("INSERT INTO promotion_runs (campaign_id, period) VALUES (1, now())")
        conn.execute(
            """
            INSERT INTO email_messages (idempotency_key, kind, to_address, template, context,
                                        subject, headers, promotion_run_id)
            SELECT 'promotion:1:' || g, 'promotion', 'user' || g || '@example.com', 'promotion',
                   jsonb_build_object('username', 'user' || g,
                                      'unsubscribe_url', 'https://example.com/u/' || md5(g::text),
                                      'title', 'News', 'content', 'Hello', 'link', '/'),
                   'News',
                   jsonb_build_object('List-Unsubscribe', '<https://example.com/u/' || md5(g::text)
                                      || '>', 'List-Unsubscribe-Post',
                                      'List-Unsubscribe=One-Click', 'List-Id', '<bench.example>'),
                   1
              FROM generate_series(1, %s) AS g
            """,
            (promotions,),
        )
        conn.execute(
            """
            INSERT INTO email_messages (idempotency_key, kind, to_address, template, context)
            SELECT 'welcome:' || g, 'welcome', 'new' || g || '@example.com', 'welcome',
                   jsonb_build_object('username', 'new' || g)
              FROM generate_series(1, %s) AS g
            """,
            (transactional,),
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE email_messages")


def set_triggers(url: str, definitions: list[str], present: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name} ON email_messages")
        if present:
            for definition in definitions:
                conn.execute(definition)


async def record_round(url: str, ids: list[int], batch: int) -> tuple[float, float]:
    """Record ``ids`` sent in batches: (backend CPU seconds, wall seconds)."""
    sessions = async_session_factory(url)
    async with sessions() as session:  # the pool's one connection, reused below
        backend = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
    cpu, wall = cpu_seconds(backend), time.perf_counter()
    now = datetime.now(UTC)
    for start in range(0, len(ids), batch):
        outcomes = [
            ledger.Outcome(
                i,
                EmailStatus.SENT,
                attempted=True,
                message_id=f"<{i}@bench.example>",
                sent_at=now,
            )
            for i in ids[start : start + batch]
        ]
        async with sessions() as session, session.begin():
            await ledger.record(session, outcomes)
    return cpu_seconds(backend) - cpu, time.perf_counter() - wall


_INTERLEAVED = """
DO $do$
DECLARE
    b bigint := {first}; w bigint := {first_welcome}; t timestamptz; dt float8; present bool;
    bulk float8[] := '{{0,0}}'; single float8[] := '{{0,0}}'; n int[] := '{{0,0}}'; k int;
BEGIN
    FOR block IN 0 .. {blocks} - 1 LOOP
        present := block % 4 IN (0, 3);  -- on, off, off, on, ...: a drift cancels out
        k := CASE WHEN present THEN 2 ELSE 1 END;
        {drop}
        IF present THEN
            {create}
        END IF;
        COMMIT;
        FOR i IN 1 .. 20 LOOP
            t := clock_timestamp();
            UPDATE email_messages AS m SET status = v.status, attempts = m.attempts + v.tried,
                   message_id = v.message_id, sent_at = v.sent_at
              FROM unnest(ARRAY(SELECT generate_series(b, b + {batch} - 1)),
                          array_fill('sent'::text, ARRAY[{batch}]), array_fill(1, ARRAY[{batch}]),
                          array_fill('<m@bench.example>'::text, ARRAY[{batch}]),
                          array_fill(now(), ARRAY[{batch}]))
                   AS v(id, status, tried, message_id, sent_at)
             WHERE m.id = v.id;
            bulk[k] := bulk[k] + extract(epoch FROM clock_timestamp() - t);
            COMMIT;
            t := clock_timestamp();
            UPDATE email_messages SET status = 'sent', attempts = attempts + 1,
                   message_id = '<t@bench.example>', sent_at = now()
             WHERE id = w;
            single[k] := single[k] + extract(epoch FROM clock_timestamp() - t);
            COMMIT;
            n[k] := n[k] + 1;
            b := b + {batch};
            w := w + 1;
        END LOOP;
    END LOOP;
    RAISE NOTICE '% % % %', bulk[1] / n[1], bulk[2] / n[2], single[1] / n[1], single[2] / n[2];
END
$do$
"""


def interleaved(
    url: str, definitions: list[str], ids: list[int], welcomes: list[int], batch: int
) -> None:
    """Time the UPDATEs in the server, triggers present and dropped in turn (the DO block)."""
    blocks = min(len(ids) // (20 * batch), len(welcomes) // 20) // 4 * 4
    drop = " ".join(f"DROP TRIGGER IF EXISTS {name} ON email_messages;" for name in TRIGGERS)
    create = " ".join(f"{definition};" for definition in definitions)
    notices: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("SET synchronous_commit = off")  # the UPDATEs are timed, not the flushes
        do = _INTERLEAVED.format(
            first=ids[0],
            first_welcome=welcomes[0],
            blocks=blocks,
            batch=batch,
            drop=drop,
            create=create,
        )
        conn.execute(do)
        for name in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name} ON email_messages")
        for definition in definitions:
            conn.execute(definition)
    off, on, single_off, single_on = (float(x) * 1e6 for x in notices[-1].split())
    print(
        f"server, {blocks * 10} UPDATEs each way: {batch} promotion rows {off:.0f} µs without"
        f" the triggers, {on:.0f} µs with: +{(on - off) / batch:.2f} µs per email;"
        f" one transactional row {single_off:.1f} µs, {single_on:.1f} µs:"
        f" +{single_on - single_off:.1f} µs"
    )


async def measure(url: str, args: argparse.Namespace) -> None:
    with psycopg.connect(url) as conn:
        definitions = [
            str(row[0])
            for row in conn.execute(
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = ANY(%s)",
                (list(TRIGGERS),),
            )
        ]
        promotions = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM email_messages WHERE promotion_run_id = 1 ORDER BY id"
            )
        ]
        welcomes = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM email_messages WHERE promotion_run_id IS NULL ORDER BY id"
            )
        ]
    half, welcome_half = len(promotions) // 2, len(welcomes) // 2
    interleaved(url, definitions, promotions[:half], welcomes[:welcome_half], args.batch)
    promotions, welcomes = promotions[half:], welcomes[welcome_half:]
    per_round, per_welcome_round = (
        len(promotions) // (2 * args.rounds),
        len(welcomes) // (2 * args.rounds),
    )
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for n in range(2 * args.rounds):
        present = n % 4 in (0, 3)  # on, off, off, on, ...: a drift cancels out
        set_triggers(url, definitions, present)
        bulk = promotions[n * per_round : (n + 1) * per_round]
        single = welcomes[n * per_welcome_round : (n + 1) * per_welcome_round]
        cpu, wall = await record_round(url, bulk, args.batch)
        results.setdefault(("bulk", present), []).append((cpu / len(bulk), wall / len(bulk)))
        cpu, wall = await record_round(url, single, 1)
        results.setdefault(("single", present), []).append((cpu / len(single), wall / len(single)))
    set_triggers(url, definitions, True)
    for kind, unit in (
        ("bulk", f"email (batches of {args.batch})"),
        ("single", "transactional email"),
    ):
        for present in (False, True):
            cpus = [c * 1e6 for c, _ in results[(kind, present)]]
            walls = [w * 1e6 for _, w in results[(kind, present)]]
            print(
                f"{kind:6} triggers {'on ' if present else 'off'}: backend CPU "
                f"{statistics.median(cpus):6.1f} µs per {unit} (rounds: "
                f"{', '.join(f'{c:.1f}' for c in cpus)}); wall {statistics.median(walls):6.1f} µs"
            )
    await check_times(url)


async def check_times(url: str) -> None:
    thresholds = Thresholds(0.05, 0.001, 100)
    with psycopg.connect(url) as conn:
        size = conn.execute(
            "SELECT count(*) FROM email_messages WHERE promotion_run_id = 1"
        ).fetchone()
        start = time.perf_counter()
        for _ in range(20):
            conn.execute(OLD_COUNTS).fetchone()
        old = (time.perf_counter() - start) / 20
    sessions = async_session_factory(url)
    async with sessions() as session:
        await check_runs(session, [1], thresholds)
        start = time.perf_counter()
        for _ in range(200):
            await check_runs(session, [1], thresholds)
        new = (time.perf_counter() - start) / 200
    rows = size[0] if size else 0
    print(f"a check of a run of {rows} rows: old query {old * 1e3:.2f} ms, new {new * 1e3:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--emails", type=int, default=200_000, help="promotion rows recorded")
    parser.add_argument("--batch", type=int, default=50, help="rows per recorded batch")
    parser.add_argument("--rounds", type=int, default=4, help="rounds with and without")
    parser.add_argument("--transactional", type=int, default=16_000, help="one-email records")
    args = parser.parse_args()
    with fresh_database("jobs_bench_breaker") as url:
        seed(url, args.emails, args.transactional)
        asyncio.run(measure_and_dispose(url, args))


async def measure_and_dispose(url: str, args: argparse.Namespace) -> None:
    try:
        await measure(url, args)
    finally:
        await dispose_engines()


if __name__ == "__main__":
    main()
