"""Settings: names from the original design, one clear line per bad value, no secret echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs import cli
from jobs.errors import ConfigError
from jobs.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No .env and no inherited variables: each test sets what it checks."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "DATABASE_URL",
        "MAIL_PORT",
        "MAIL_SERVER",
        "SECRET_KEY",
        "MAIL_PASSWORD",
        "WORKER_HTTP_PORT",
        "PROMOTION_SCHEDULE_ENABLED",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@db:5432/app",
        "postgres://u:p@db:5432/app",
        "postgresql+psycopg://u:p@db:5432/app",
    ],
)
def test_database_url_schemes_are_normalized(url: str) -> None:
    assert load_settings(DATABASE_URL=url).database_url == "postgresql://u:p@db:5432/app"


def test_unset_database_url_means_embedded() -> None:
    assert load_settings().database_url is None


def test_reads_dot_env_with_the_original_variable_names(tmp_path: object) -> None:
    with open(".env", "w") as env:
        env.write(
            "MAIL_SERVER=smtp.gmail.com\nMAIL_PORT=587\nMAIL_USERNAME=me@gmail.com\n"
            "MAIL_PASSWORD=app-password\nMAIL_FROM=me@gmail.com\nMAIL_FROM_NAME=Me\n"
            "CELERY_BROKER_URL=redis://redis:6379/0\n"  # left over from Celery: ignored
        )
    settings = load_settings()
    assert (settings.MAIL_SERVER, settings.MAIL_PORT, settings.MAIL_FROM_NAME) == (
        "smtp.gmail.com",
        587,
        "Me",
    )
    assert settings.MAIL_PASSWORD is not None
    assert settings.MAIL_PASSWORD.get_secret_value() == "app-password"
    assert "app-password" not in repr(settings)


def test_every_bad_value_gets_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(
            DATABASE_URL="mysql://root:hunter2@db/app",
            MAIL_PORT="abc",
            SECRET_KEY="short-secret",
            MAIL_FROM="not an address",
            WORKER_CONCURRENCY="0",
        )
    lines = str(raised.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "DATABASE_URL",
        "MAIL_PORT",
        "MAIL_FROM",
        "SECRET_KEY",
        "WORKER_CONCURRENCY",
    ]
    assert "hunter2" not in str(raised.value)
    assert "short-secret" not in str(raised.value)
    assert "'abc'" in str(raised.value)  # non-secret values are shown


def test_both_tls_modes_is_refused() -> None:
    with pytest.raises(ConfigError, match="MAIL_STARTTLS and MAIL_SSL_TLS"):
        load_settings(MAIL_STARTTLS="true", MAIL_SSL_TLS="true")


def test_cli_prints_the_problem_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.settings import get_settings

    monkeypatch.setenv("MAIL_PORT", "99999")
    monkeypatch.setenv("MAIL_PASSWORD", "do-not-print-me")
    get_settings.cache_clear()
    try:
        assert cli.main(["migrate"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "MAIL_PORT" in err
    assert "less than or equal to 65535" in err
    assert "Traceback" not in err
    assert "do-not-print-me" not in err


# Results -------------------------------------------------------------


def test_result_and_redis_settings_each_get_a_line_and_the_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(
            REDIS_URL="http://:hunter2@cache:6379/0",
            RESULT_TTL="0",
            RESULT_MAX_BYTES="ten",
            REDIS_TIMEOUT="-1",
            REDIS_KEY_PREFIX="my app",
        )
    lines = str(raised.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "RESULT_MAX_BYTES",
        "RESULT_TTL",
        "REDIS_URL",
        "REDIS_TIMEOUT",
        "REDIS_KEY_PREFIX",
    ]
    assert "must start with redis://, rediss://, unix://" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_redis_is_optional_and_its_password_stays_secret() -> None:
    assert load_settings(REDIS_URL="").REDIS_URL is None
    settings = load_settings(REDIS_URL="redis://:hunter2@cache:6379/0")
    assert "hunter2" not in repr(settings)
    assert (settings.RESULT_TTL, settings.RESULT_MAX_BYTES, settings.REDIS_KEY_PREFIX) == (
        86400,
        1048576,
        "jobs",
    )


# --- Delivery engine ---------------------------------------------------------


def test_delivery_settings_defaults_and_blank_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAIL_RATE_LIMIT", "MAIL_MAX_CONNECTIONS", "JOB_TIMEOUT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.MAIL_RATE_LIMIT is None  # unlimited
    assert settings.MAIL_MAX_CONNECTIONS >= 1
    assert settings.JOB_TIMEOUT_SECONDS >= 60  # generous
    with open(".env", "w") as env:
        env.write("MAIL_RATE_LIMIT=\nMAIL_MAX_ATTEMPTS=3\n")  # as in .env.example
    settings = load_settings()
    assert (settings.MAIL_RATE_LIMIT, settings.MAIL_MAX_ATTEMPTS) == (None, 3)
    assert load_settings(MAIL_RATE_LIMIT="12.5").MAIL_RATE_LIMIT == 12.5


def test_bad_delivery_settings_name_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            MAIL_RATE_LIMIT="0",
            MAIL_MAX_CONNECTIONS="0",
            MAIL_MAX_ATTEMPTS="0",
            MAIL_RETRY_MAX_DELAY="-1",
            JOB_TIMEOUT_SECONDS="0",
        )
    lines = str(info.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "MAIL_MAX_CONNECTIONS",
        "MAIL_RATE_LIMIT",
        "MAIL_MAX_ATTEMPTS",
        "MAIL_RETRY_MAX_DELAY",
        "JOB_TIMEOUT_SECONDS",
    ]


# --- Operations ------------------------------------------------------------------


def test_operations_settings_have_safe_defaults_and_clear_errors() -> None:
    settings = load_settings()
    assert (settings.WORKER_HTTP_HOST, settings.WORKER_HTTP_PORT) == ("127.0.0.1", 9464)
    assert settings.JOB_RETENTION_DAYS == 7
    with pytest.raises(ConfigError) as error:
        load_settings(WORKER_HTTP_PORT=70000, WORKER_STALLED_AFTER=0, JOB_MAX_RECOVERIES=-1)
    lines = str(error.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "WORKER_HTTP_PORT",
        "WORKER_STALLED_AFTER",
        "JOB_MAX_RECOVERIES",
    ]
    assert "70000" in lines[0]


def test_web_credentials_go_together() -> None:
    with pytest.raises(ConfigError, match="WEB_USERNAME and WEB_PASSWORD go together") as caught:
        load_settings(WEB_USERNAME="ops", _env_file=None)
    assert "ops" not in str(caught.value).split("go together")[1]
    both = load_settings(WEB_USERNAME="ops", WEB_PASSWORD="s3cret-pass", _env_file=None)
    assert both.WEB_PASSWORD is not None
    assert "s3cret" not in repr(both)


@pytest.mark.parametrize(
    ("overrides", "link"),
    [
        ({}, "http://localhost:3000/unsubscribe"),
        ({"WEB_BASE_URL": "https://example.com/jobs"}, "https://example.com/jobs/unsubscribe"),
        (
            {"WEB_BASE_URL": "https://example.com/jobs", "UNSUBSCRIBE_URL": "https://u.example/x"},
            "https://u.example/x",
        ),
    ],
)
def test_unsubscribe_link_defaults_to_jobs_web(overrides: dict[str, str], link: str) -> None:
    from jobs.promotions.promote import unsubscribe_url

    assert unsubscribe_url(load_settings(_env_file=None, **overrides)) == link
