"""Configuration: one validated `Settings`, read from `.env` and the environment."""

from __future__ import annotations

import functools
import importlib.util
import re
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
_SENSITIVE = frozenset(
    {
        "DATABASE_URL",
        "MAIL_PASSWORD",
        "SECRET_KEY",
        "REDIS_URL",
        "SECRET_KEY_FALLBACKS",
        "MAIL_BULK_PASSWORD",
        "WEBHOOK_SECRET",
        "POSTMARK_WEBHOOK_SECRET",
        "WEB_PASSWORD",
    }
)
_PG_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

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

    # Delivery engine: SMTP pool, retries, global rate limit, job timeout
    MAIL_MAX_CONNECTIONS: Annotated[int, Field(ge=1, le=100)] = 4
    MAIL_RATE_LIMIT: Annotated[float, Field(gt=0, le=100_000)] | None = None
    MAIL_MAX_ATTEMPTS: Annotated[int, Field(ge=1, le=50)] = 10
    MAIL_RETRY_MAX_DELAY: Annotated[float, Field(ge=1, le=86_400)] = 1800.0
    JOB_TIMEOUT_SECONDS: Annotated[float, Field(gt=0, le=86_400)] = 900.0

    # Application
    FRONTEND_URL: AnyHttpUrl = AnyHttpUrl("http://localhost:3000")
    SECRET_KEY: SecretStr | None = None

    # Worker
    WORKER_CONCURRENCY: Annotated[int, Field(ge=1, le=1000)] = 10

    # --- Promotions ---------------------------------------------
    PROMOTION_CRON: str = "0 9 * * *"  # UTC; 6 fields = seconds last
    PROMOTION_SCHEDULE_ENABLED: bool = True  # false: only `jobs promote` runs them
    PROMOTION_CHUNK_SIZE: Annotated[int, Field(ge=1, le=10_000)] = 500
    UNSUBSCRIBE_URL: AnyHttpUrl | None = None  # default WEB_BASE_URL or FRONTEND_URL + /unsubscribe
    UNSUBSCRIBE_MAILTO: str | None = None

    @field_validator("PROMOTION_CRON")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        value = " ".join(value.split())
        if not croniter.is_valid(value):
            raise ValueError(
                "is not a cron expression: 5 fields (minute hour day month weekday) "
                "or 6 with seconds last, e.g. '0 9 * * *'"
            )
        return value

    @field_validator("UNSUBSCRIBE_URL", "MAIL_RATE_LIMIT", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """``NAME=`` (empty, as in .env.example) means unset (for a rate: unlimited)."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("UNSUBSCRIBE_MAILTO")
    @classmethod
    def _valid_mailto(cls, value: str | None) -> str | None:
        from jobs.mail.address import normalize_address

        return normalize_address(value) if value and value.strip() else None

    # --- end Promotions -----------------------------------------------------

    # Results: stored in PostgreSQL; Redis is an optional cache in front.
    RESULT_MAX_BYTES: Annotated[int, Field(ge=64, le=64 * 1024 * 1024)] = 1024 * 1024
    RESULT_TTL: Annotated[int, Field(ge=1)] = 24 * 3600
    REDIS_URL: SecretStr | None = None
    REDIS_TIMEOUT: Annotated[float, Field(gt=0, le=30)] = 0.5
    REDIS_KEY_PREFIX: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")] = "jobs"

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("must start with " + ", ".join(_REDIS_SCHEMES))
        if importlib.util.find_spec("redis") is None:
            raise ValueError("is set but the redis package is missing: pip install 'jobs[cache]'")
        return value

    # --- Deliverability: bounces, complaints, suppression, streams, throttles ---
    MAIL_BOUNCE_DOMAIN: str | None = None  # VERP return path bounces+<ref>@domain
    INBOUND_HOST: str = "127.0.0.1"
    INBOUND_PORT: Port = 2525
    SOFT_BOUNCE_LIMIT: Annotated[int, Field(ge=1, le=1000)] = 3
    SOFT_BOUNCE_WINDOW_HOURS: Annotated[float, Field(gt=0, le=24 * 365)] = 72.0
    PROMOTION_MAX_BOUNCE_RATE: Annotated[float, Field(ge=0, le=1)] = 0.05
    PROMOTION_MAX_COMPLAINT_RATE: Annotated[float, Field(ge=0, le=1)] = 0.001
    PROMOTION_BREAKER_MIN_SAMPLE: Annotated[int, Field(ge=1)] = 100
    WEBHOOK_SECRET: SecretStr | None = None  # generic signed JSON endpoint
    POSTMARK_WEBHOOK_SECRET: SecretStr | None = None  # HTTP basic auth password
    SES_CERT_URL_PATTERN: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
    # A second SMTP stream for promotions (unset: promotions use MAIL_SERVER).
    MAIL_BULK_SERVER: str | None = None
    MAIL_BULK_PORT: Port | None = None
    MAIL_BULK_USERNAME: str | None = None
    MAIL_BULK_PASSWORD: SecretStr | None = None
    MAIL_BULK_STARTTLS: bool | None = None
    MAIL_BULK_SSL_TLS: bool | None = None
    MAIL_BULK_FROM: str | None = None
    MAIL_BULK_RATE_LIMIT: Annotated[float, Field(gt=0, le=100_000)] | None = None
    MAIL_DOMAIN_RATE_LIMITS: str | None = None  # "gmail.com=20,yahoo.com=10" (messages/s)

    @field_validator(
        "MAIL_BOUNCE_DOMAIN",
        "MAIL_BULK_SERVER",
        "MAIL_BULK_PORT",
        "MAIL_BULK_USERNAME",
        "MAIL_BULK_STARTTLS",
        "MAIL_BULK_SSL_TLS",
        "MAIL_BULK_FROM",
        "MAIL_BULK_RATE_LIMIT",
        "MAIL_DOMAIN_RATE_LIMITS",
        "WEBHOOK_SECRET",
        "POSTMARK_WEBHOOK_SECRET",
        "MAIL_BULK_PASSWORD",
        mode="before",
    )
    @classmethod
    def _blank_deliverability_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("MAIL_BOUNCE_DOMAIN")
    @classmethod
    def _bounce_domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", value) or "." not in value:
            raise ValueError("must be a domain name, e.g. bounces.example.com")
        return value

    @field_validator("MAIL_BULK_FROM")
    @classmethod
    def _valid_bulk_sender(cls, value: str | None) -> str | None:
        from jobs.mail.address import normalize_address

        return None if value is None else normalize_address(value)

    @field_validator("MAIL_DOMAIN_RATE_LIMITS")
    @classmethod
    def _domain_limits(cls, value: str | None) -> str | None:
        if value is not None:
            parse_domain_limits(value)
        return value

    @field_validator("SES_CERT_URL_PATTERN")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a regular expression: {exc}") from None
        return value

    @property
    def domain_rate_limits(self) -> dict[str, float]:
        return parse_domain_limits(self.MAIL_DOMAIN_RATE_LIMITS or "")

    # --- end Deliverability ------------------------------------------------------

    # Operations: metrics/health endpoint, shutdown, stalled jobs, retention
    WORKER_HTTP_HOST: str = "127.0.0.1"
    WORKER_HTTP_PORT: Annotated[int, Field(ge=0, le=65535)] = 9464  # 0 disables
    WORKER_SHUTDOWN_TIMEOUT: Annotated[float, Field(ge=0)] = 30.0
    WORKER_STALLED_AFTER: Annotated[float, Field(ge=1, le=86400)] = 60.0
    JOB_MAX_RECOVERIES: Annotated[int, Field(ge=0, le=100)] = 3
    JOB_RETENTION_DAYS: Annotated[int, Field(ge=1)] = 7
    LEDGER_CONTEXT_DAYS: Annotated[int, Field(ge=0)] = 30  # 0 keeps contexts forever

    # Senders: Reply-To, the postal address of promotions, rotating SECRET_KEY
    MAIL_REPLY_TO: str | None = None
    PROMOTION_POSTAL_ADDRESS: str | None = None  # CAN-SPAM: shown in every promotion's footer
    SECRET_KEY_FALLBACKS: SecretStr | None = None  # former SECRET_KEYs, comma-separated

    @field_validator("MAIL_REPLY_TO")
    @classmethod
    def _valid_reply_to(cls, value: str | None) -> str | None:
        from jobs.mail.address import normalize_address

        return normalize_address(value) if value and value.strip() else None

    @field_validator("PROMOTION_POSTAL_ADDRESS")
    @classmethod
    def _postal_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if any((ord(c) < 32 and c != "\n") or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters other than line breaks")
        return value.strip()

    @field_validator("SECRET_KEY_FALLBACKS")
    @classmethod
    def _fallbacks(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if any(len(key.strip()) < 16 for key in value.get_secret_value().split(",")):
            raise ValueError("every key must be at least 16 characters long")
        return value

    @property
    def secret_key_fallbacks(self) -> list[str]:
        """SECRET_KEY_FALLBACKS as a list (oldest last, as given)."""
        if self.SECRET_KEY_FALLBACKS is None:
            return []
        return [key.strip() for key in self.SECRET_KEY_FALLBACKS.get_secret_value().split(",")]

    # --- Web: `jobs web` (unsubscribe endpoint, operator dashboard) ---------------
    WEB_HOST: str = "127.0.0.1"
    WEB_PORT: Port = 8000
    # Where `jobs web` is reachable from outside, e.g. https://example.com/jobs: promotions
    # link to WEB_BASE_URL/unsubscribe unless UNSUBSCRIBE_URL says otherwise.
    WEB_BASE_URL: AnyHttpUrl | None = None
    WEB_USERNAME: str | None = None
    WEB_PASSWORD: SecretStr | None = None

    @field_validator("WEB_BASE_URL", "WEB_USERNAME", "WEB_PASSWORD", mode="before")
    @classmethod
    def _blank_web_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _web_credentials_paired(self) -> Settings:
        if (self.WEB_USERNAME is None) != (self.WEB_PASSWORD is None):
            raise ValueError("WEB_USERNAME and WEB_PASSWORD go together: set both or neither")
        return self

    # --- end Web ------------------------------------------------------------------

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
        from jobs.mail.address import normalize_address

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


def parse_domain_limits(value: str) -> dict[str, float]:
    """``"gmail.com=20, yahoo.com=10"`` → ``{"gmail.com": 20.0, "yahoo.com": 10.0}``."""
    limits: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        domain, equals, rate = item.partition("=")
        domain = domain.strip().lower()
        try:
            number = float(rate)
        except ValueError:
            number = -1.0
        if not equals or not domain or "@" in domain or not 0 < number <= 100_000:
            raise ValueError(
                "expects domain=messages-per-second pairs separated by commas, "
                "e.g. gmail.com=20,yahoo.com=10"
            )
        limits[domain] = number
    return limits


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
