"""Configuration: one validated `Settings`, read from `.env` and the environment."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs.errors import ConfigError

# Variables whose values are never echoed back in an error message.
_SENSITIVE = frozenset({"DATABASE_URL", "MAIL_PASSWORD", "SECRET_KEY", "REDIS_URL"})
_PG_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")

Port = Annotated[int, Field(ge=1, le=65535)]


class Settings(BaseSettings):
    """Every knob of `jobs`. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        hide_input_in_errors=True,
    )

    # Database
    DATABASE_URL: SecretStr | None = None
    JOBS_DATA_DIR: Path = Path(".data")

    # Mail (names kept from the Celery design so an existing .env works)
    MAIL_SERVER: str = "localhost"
    MAIL_PORT: Port = 1025
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: SecretStr | None = None
    MAIL_FROM: str = "noreply@example.com"
    MAIL_FROM_NAME: str = "jobs"
    MAIL_STARTTLS: bool = False
    MAIL_SSL_TLS: bool = False
    MAIL_TIMEOUT: Annotated[float, Field(gt=0)] = 30.0
    MAIL_TEMPLATE_DIR: Path | None = None

    # Application
    FRONTEND_URL: AnyHttpUrl = AnyHttpUrl("http://localhost:3000")
    SECRET_KEY: SecretStr | None = None

    # Worker
    WORKER_CONCURRENCY: Annotated[int, Field(ge=1, le=1000)] = 10

    # Operations (issue 5): metrics/health endpoint, shutdown, stalled jobs, retention
    WORKER_HTTP_HOST: str = "127.0.0.1"
    WORKER_HTTP_PORT: Annotated[int, Field(ge=0, le=65535)] = 9464  # 0 disables
    WORKER_SHUTDOWN_TIMEOUT: Annotated[float, Field(ge=0)] = 30.0
    WORKER_STALLED_AFTER: Annotated[float, Field(ge=1, le=86400)] = 60.0
    JOB_MAX_RECOVERIES: Annotated[int, Field(ge=0, le=100)] = 3
    JOB_RETENTION_DAYS: Annotated[int, Field(ge=1)] = 7
    LEDGER_CONTEXT_DAYS: Annotated[int, Field(ge=0)] = 30  # 0 keeps contexts forever

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(_PG_SCHEMES):
            raise ValueError("must start with " + ", ".join(_PG_SCHEMES))
        return value

    @field_validator("SECRET_KEY")
    @classmethod
    def _secret_key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters long")
        return value

    @field_validator("MAIL_SERVER", "MAIL_FROM_NAME")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters (CR, LF, ...)")
        return value

    @field_validator("MAIL_FROM")
    @classmethod
    def _valid_sender(cls, value: str) -> str:
        from jobs.address import normalize_address

        return normalize_address(value)

    @field_validator("MAIL_TEMPLATE_DIR")
    @classmethod
    def _template_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value

    @model_validator(mode="after")
    def _tls_modes_exclusive(self) -> Settings:
        if self.MAIL_STARTTLS and self.MAIL_SSL_TLS:
            raise ValueError(
                "MAIL_STARTTLS and MAIL_SSL_TLS cannot both be true: pick one TLS mode"
            )
        return self

    @property
    def database_url(self) -> str | None:
        """The configured URL in libpq form (``postgresql://``), or None for embedded."""
        if self.DATABASE_URL is None:
            return None
        url = self.DATABASE_URL.get_secret_value()
        for prefix in _PG_SCHEMES:
            if url.startswith(prefix):
                return "postgresql://" + url[len(prefix) :]
        raise AssertionError("validated above")  # pragma: no cover


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if loc in _SENSITIVE or not error["loc"] or "input" not in error:
        return f"{loc}: {message}"
    return f"{loc}: {message} (got {error['input']!r})"


def load_settings(**overrides: Any) -> Settings:
    """Build `Settings`, turning validation errors into one `ConfigError`.

    The error has one line per problem: the variable, what is wrong, and the
    offending value unless the variable is secret.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(dict(err)) for err in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings; call at the edges (CLI, app factory, task bodies)."""
    return load_settings()
