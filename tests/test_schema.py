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
