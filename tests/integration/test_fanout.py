"""The fan-out's shape: users read in keyset chunks, one transaction and one job per chunk.

Memory stays flat because no query ever reads more than one chunk of users:
checked on the SQL the fan-out actually sends, not with a timer.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import event

from jobs.db import async_engine, async_session_factory, dispose_engines
from jobs.promotions.fanout import Chunk, PromotionConfig
from jobs.promotions.promote import send_promotions
from tests.integration.test_promotion import add_users

CONFIG = PromotionConfig(
    chunk_size=4,
    frontend_url="https://shop.example.com",
    unsubscribe_url="https://shop.example.com/unsubscribe",
    unsubscribe_mailto=None,
    key=b"k" * 32,
)
PERIOD = datetime(2026, 1, 1, 9, tzinfo=UTC)


def _fan_out(url: str) -> tuple[list[Chunk], list[tuple[str, Any]]]:
    chunks: list[Chunk] = []
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        statements.append((statement, parameters))

    async def go() -> None:
        engine = async_engine(url).sync_engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            await send_promotions(
                async_session_factory(url), period=PERIOD, config=CONFIG, on_chunk=chunks.append
            )
        finally:
            event.remove(engine, "before_cursor_execute", record)
            await dispose_engines()

    asyncio.run(go())
    return chunks, statements


def test_users_are_read_by_keyset_one_chunk_at_a_time(database_url: str) -> None:
    add_users(database_url, 10, inactive=2, unsubscribed=2)
    chunks, statements = _fan_out(database_url)
    assert [(c.users, c.queued) for c in chunks] == [(4, 4), (4, 4), (2, 2)]
    reads = [(s, p) for s, p in statements if s.lstrip().startswith("SELECT users.id")]
    assert len(reads) == 3
    cursors = []
    for sql, parameters in reads:
        after = re.search(r"WHERE users\.id > %\((\w+)\)s", sql)
        limit = re.search(r"ORDER BY users\.id\s+LIMIT %\((\w+)\)s", sql)
        assert after is not None, sql
        assert limit is not None, sql
        assert parameters[limit.group(1)] == CONFIG.chunk_size
        cursors.append(parameters[after.group(1)])
    assert cursors == [0, 4, 8]  # each read starts after the last user of the previous one


def test_each_chunk_is_one_delivery_job_with_its_own_rows(database_url: str) -> None:
    add_users(database_url, 10)
    _fan_out(database_url)
    with psycopg.connect(database_url) as conn:
        jobs = conn.execute(
            "SELECT args, priority, queue_name FROM procrastinate_jobs ORDER BY id"
        ).fetchall()
        ledger: dict[int, str] = dict(
            conn.execute("SELECT id, idempotency_key FROM email_messages").fetchall()
        )
    assert [len(args["message_ids"]) for args, _, _ in jobs] == [4, 4, 2]
    assert {(priority, queue) for _, priority, queue in jobs} == {(0, "email")}  # bulk
    ids = [i for args, _, _ in jobs for i in args["message_ids"]]
    assert sorted(ids) == sorted(ledger)
    assert sorted(ledger.values()) == sorted(f"promotion:1:{n}" for n in range(1, 11))


def test_ledger_rows_carry_the_template_data_and_headers(database_url: str) -> None:
    add_users(database_url, 1)
    _fan_out(database_url)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT template, subject, context, headers, promotion_run_id FROM email_messages"
        ).fetchone()
    assert row is not None
    template, subject, context, headers, run_id = row
    assert (template, subject, run_id) == ("promotion", "Special Promotion Just For You!", 1)
    link = context.pop("unsubscribe_url")
    assert link.startswith("https://shop.example.com/unsubscribe?token=1.")
    datetime.strptime(context.pop("current_time"), "%Y-%m-%d %H:%M:%S")
    assert context == {
        "username": "user0",
        "promotion_title": "Special Offer Today!",
        "promotion_content": "Get 50% off on all products!",
        "promotion_link": "https://shop.example.com/promotions",
        "frontend_url": "https://shop.example.com",
        "postal_address": "",
    }
    assert headers == {
        "List-Unsubscribe": f"<{link}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": "default <default.localhost>",
    }
