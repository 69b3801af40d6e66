"""Migrations: procrastinate's schema + the app tables, idempotent, autogenerate-clean."""

from __future__ import annotations

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from jobs import cli
from jobs.db import sqlalchemy_url
from jobs.db.migrations import head_revision, include_object, migrate
from jobs.models import Base
from tests.conftest import count


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    assert migrate(database_url) == (head_revision(), head_revision())
    assert migrate(database_url) == (head_revision(), head_revision())


def test_cli_migrate_is_idempotent(database_url: str, capsys: object) -> None:
    assert cli.main(["migrate"]) == 0
    assert cli.main(["migrate"]) == 0


def test_migrates_an_empty_database_from_scratch(server_url: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    assert migrate(database_url) == (None, head_revision())
    assert count(database_url, "SELECT count(*) FROM procrastinate_jobs") == 0
    assert count(database_url, "SELECT count(*) FROM email_messages") == 0


def test_autogenerate_against_head_proposes_nothing(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_object": include_object,
                "compare_type": True,
                "compare_server_default": True,
                "target_metadata": Base.metadata,
            },
        )
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_failure_kinds_of_existing_rows_are_read_from_their_reasons(database_url: str) -> None:
    from alembic import command

    from jobs.db.migrations import alembic_config

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    command.upgrade(alembic_config(database_url), "0006")
    reasons = {
        "transient, retries exhausted: 451 4.3.0 try later": "transient_exhausted",
        "worker died 3 times": "worker_died",
        "cancelled: job 7 was cancelled by an operator": "cancelled",
        "550 5.1.1 no such user": "rejected",
        "TemplateError: 'username' is undefined": "invalid",
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n, reason in enumerate(reasons):
            conn.execute(
                "INSERT INTO email_messages (idempotency_key, kind, to_address, template, status,"
                " last_error) VALUES (%s, 't', 'a@example.com', 'welcome', 'failed', %s)",
                (f"k{n}", reason),
            )
        conn.execute(
            "INSERT INTO email_messages (idempotency_key, kind, to_address, template, status)"
            " VALUES ('sent', 't', 'a@example.com', 'welcome', 'sent')"
        )
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        kinds: dict[str, str | None] = dict(
            conn.execute(
                "SELECT coalesce(last_error, status), failure_kind FROM email_messages"
            ).fetchall()
        )
    assert kinds == {**reasons, "sent": None}
