"""Schema migrations (Alembic), run from code: `jobs migrate`, the demo, the tests."""

from __future__ import annotations

import functools
import logging
from importlib.metadata import version
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, exc, pool

from jobs.db import database_url, describe_server, sqlalchemy_url
from jobs.errors import DatabaseUnreachable, SchemaNotReady
from jobs.settings import Settings

logger = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent.parent  # jobs/


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate filter: procrastinate's tables and indexes are not ours."""
    if type_ == "table" and name and name.startswith("procrastinate_"):
        return False
    table = getattr(obj, "table", None)
    return not (table is not None and str(table.name).startswith("procrastinate_"))


def migrations_dir() -> Path:
    """``migrations/`` in a source checkout, or the copy shipped inside the wheel."""
    for candidate in (_PACKAGE.parent / "migrations", _PACKAGE / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the jobs migrations directory is missing from this installation")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def current_revision(url: str) -> str | None:
    engine = create_engine(
        sqlalchemy_url(url), poolclass=pool.NullPool, connect_args={"connect_timeout": 10}
    )
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except exc.OperationalError as error:
        first_line = (str(error.orig).strip().splitlines() or ["no answer"])[0]
        raise DatabaseUnreachable(
            f"cannot connect to PostgreSQL at {describe_server(url)}: {first_line}"
        ) from None
    finally:
        engine.dispose()


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("postgresql://"))


def head_revision() -> str | None:
    return _scripts().get_current_head()


# The procrastinate minor whose schema the migrations ship (0001 freezes its schema.sql).
# A procrastinate upgrade = one revision per upstream migration file, then this constant.
PROCRASTINATE_SCHEMA = "3.10"


def schema_problem(current: str | None, installed: str | None = None) -> str | None:
    """Why this installation cannot work on a database at revision ``current``, or None.

    ``installed`` is procrastinate's version (default: the installed one).
    """
    installed = installed or version("procrastinate")
    if ".".join(installed.split(".")[:2]) != PROCRASTINATE_SCHEMA:
        return (
            f"procrastinate {installed} is installed, but the schema jobs migrates to is "
            f"procrastinate {PROCRASTINATE_SCHEMA}'s: install procrastinate=="
            f"{PROCRASTINATE_SCHEMA}.* (pip install -c constraints.txt)"
        )
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return "the database is not migrated: run `jobs migrate`"
    known = {script.revision for script in _scripts().walk_revisions()}
    if current not in known:
        return (
            f"the database schema (revision {current}) is newer than this installation of "
            f"jobs (revision {head}): upgrade jobs"
        )
    return f"the database schema is at revision {current}, not {head}: run `jobs migrate`"


def check_schema(url: str) -> None:
    """Raise `SchemaNotReady` (one line) unless the database at ``url`` is at head and
    the installed procrastinate matches the schema."""
    problem = schema_problem(current_revision(url))
    if problem is not None:
        raise SchemaNotReady(problem)


def usable_url(settings: Settings) -> str:
    """The database URL, ready to use: DATABASE_URL as configured, or the embedded
    server's database, migrated on first use (a development setup needs no step)."""
    url = database_url(settings)
    if settings.database_url is None:
        ensure_migrated(url)
    return url


@functools.cache
def ensure_migrated(url: str) -> None:
    """Migrate ``url`` to head unless it is there already (once per process)."""
    if current_revision(url) != head_revision():
        logger.info("migrating the embedded database to revision %s", head_revision())
        migrate(url)


def migrate(url: str) -> tuple[str | None, str | None]:
    """Bring the database at ``url`` to head; returns (before, after). Idempotent."""
    before = current_revision(url)
    command.upgrade(alembic_config(url), "head")
    after = current_revision(url)
    logger.debug("schema at revision %s (was %s)", after, before)
    return before, after
