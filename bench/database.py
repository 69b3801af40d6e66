"""A fresh, migrated benchmark database per scenario, and fast seeding."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psycopg

from jobs.db import database_url, with_database
from jobs.db.migrations import migrate
from jobs.settings import load_settings


def server_url() -> str:
    """DATABASE_URL when set, else the embedded server (as the product does)."""
    return database_url(load_settings())


@contextlib.contextmanager
def fresh_database(name: str = "jobs_bench") -> Iterator[str]:
    """Create ``name`` anew, migrate it, point DATABASE_URL at it; drop it afterwards."""
    admin = server_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin, name)
    migrate(url)
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_users(url: str, count: int) -> None:
    """Exactly ``count`` active users (any earlier ones go), inserted set-based."""
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE users RESTART IDENTITY CASCADE")
        conn.execute(
            "INSERT INTO users (email, username) "
            "SELECT 'user' || g || '@example.com', 'user' || g FROM generate_series(1, %s) g",
            (count,),
        )
        conn.execute("ANALYZE users")
