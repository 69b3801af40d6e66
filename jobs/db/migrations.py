"""Schema migrations (Alembic), run from code: `jobs migrate`, the demo, the tests."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from jobs.db import sqlalchemy_url

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
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()


def migrate(url: str) -> tuple[str | None, str | None]:
    """Bring the database at ``url`` to head; returns (before, after). Idempotent."""
    before = current_revision(url)
    command.upgrade(alembic_config(url), "head")
    after = current_revision(url)
    logger.debug("schema at revision %s (was %s)", after, before)
    return before, after
