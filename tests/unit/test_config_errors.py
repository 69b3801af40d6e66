"""Bad configuration and schema mismatches: one line, naming what to fix, never a secret."""

from __future__ import annotations

import pytest
import yaml

from jobs.db.migrations import PROCRASTINATE_SCHEMA, head_revision, schema_problem
from jobs.errors import ConfigError
from jobs.settings import load_settings
from tests.conftest import ROOT


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:SECRET@[::1",
        "postgresql://u:SE%ZZCRET@localhost/db",
        "postgresql://u:SECRET@host:99999/db",
        "postgres://u:SECRET@host:abc/db",
        "postgresql://u:SEC RET@host/db",
        "postgresql://u@host/db?password=SECRET&port=nope",
    ],
)
def test_a_bad_database_url_is_one_line_with_the_password_masked(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(DATABASE_URL=url)
    message = str(caught.value)
    assert "\n" not in message
    assert "DATABASE_URL" in message
    assert "SECRET" not in message
    assert "SE%ZZCRET" not in message


def test_schema_problems_name_the_fix() -> None:
    installed = f"{PROCRASTINATE_SCHEMA}.0"
    assert schema_problem(head_revision(), installed) is None
    assert "run `jobs migrate`" in (schema_problem(None, installed) or "")
    assert "run `jobs migrate`" in (schema_problem("0001", installed) or "")
    assert "upgrade jobs" in (schema_problem("9999", installed) or "")
    mismatch = schema_problem(head_revision(), "3.11.2") or ""
    assert "procrastinate 3.11.2" in mismatch
    assert f"procrastinate {PROCRASTINATE_SCHEMA}" in mismatch


def test_compose_takes_secret_key_from_env_and_fails_without_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["x-jobs"]["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")
