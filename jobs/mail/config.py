"""Mail settings as plain values, taken from `Settings` once at the edge."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from jobs.errors import ConfigError
from jobs.feedback.config import Verp, verp
from jobs.mail.templates import search_path
from jobs.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    ssl_tls: bool = False
    timeout: float = 30.0

    def __post_init__(self) -> None:
        encrypted = self.starttls or self.ssl_tls
        if self.username and not encrypted and not is_loopback(self.host):
            raise ConfigError(
                f"MAIL_USERNAME is set but the connection to {self.host}:{self.port} is not "
                "encrypted: set MAIL_STARTTLS=true (port 587) or MAIL_SSL_TLS=true (port 465)"
            )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class MailConfig:
    smtp: SmtpConfig
    sender: str
    sender_name: str
    template_dirs: tuple[Path, ...]
    template_globals: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None  # MAIL_REPLY_TO: Reply-To of every email that sets none
    verp: Verp | None = None  # MAIL_BOUNCE_DOMAIN: the envelope sender names the row
    stream: str = "default"  # "bulk": promotions on their own server (MAIL_BULK_*)
    rate_limit: float | None = None  # this stream's messages/second (its own budget)
    domain_limits: dict[str, float] = field(default_factory=dict)  # MAIL_DOMAIN_RATE_LIMITS

    @property
    def budget(self) -> str:
        """The name of this stream's send budget (`jobs.mail.ratelimit`)."""
        return (
            self.smtp.address if self.stream == "default" else f"{self.stream}:{self.smtp.address}"
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MailConfig:
        return cls(
            smtp=SmtpConfig(
                host=settings.MAIL_SERVER,
                port=settings.MAIL_PORT,
                username=settings.MAIL_USERNAME,
                password=settings.MAIL_PASSWORD,
                starttls=settings.MAIL_STARTTLS,
                ssl_tls=settings.MAIL_SSL_TLS,
                timeout=settings.MAIL_TIMEOUT,
            ),
            sender=settings.MAIL_FROM,
            sender_name=settings.MAIL_FROM_NAME,
            template_dirs=search_path(settings.MAIL_TEMPLATE_DIR),
            template_globals={"frontend_url": str(settings.FRONTEND_URL).rstrip("/")},
            reply_to=settings.MAIL_REPLY_TO,
            verp=verp(settings),
            rate_limit=settings.MAIL_RATE_LIMIT,
            domain_limits=settings.domain_rate_limits,
        )

    @classmethod
    def for_stream(cls, settings: Settings, *, bulk: bool) -> MailConfig:
        """The transactional stream, or for ``bulk`` mail the MAIL_BULK_* stream when
        MAIL_BULK_SERVER is set (each MAIL_BULK_* unset falls back to its MAIL_*)."""
        default = cls.from_settings(settings)
        if not bulk or settings.MAIL_BULK_SERVER is None:
            return default

        def pick(bulk_value: Any, value: Any) -> Any:
            return value if bulk_value is None else bulk_value

        try:
            smtp = SmtpConfig(
                host=settings.MAIL_BULK_SERVER,
                port=pick(settings.MAIL_BULK_PORT, settings.MAIL_PORT),
                username=pick(settings.MAIL_BULK_USERNAME, settings.MAIL_USERNAME),
                password=pick(settings.MAIL_BULK_PASSWORD, settings.MAIL_PASSWORD),
                starttls=pick(settings.MAIL_BULK_STARTTLS, settings.MAIL_STARTTLS),
                ssl_tls=pick(settings.MAIL_BULK_SSL_TLS, settings.MAIL_SSL_TLS),
                timeout=settings.MAIL_TIMEOUT,
            )
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("MAIL_", "MAIL_BULK_")) from None
        return replace(
            default,
            smtp=smtp,
            sender=pick(settings.MAIL_BULK_FROM, settings.MAIL_FROM),
            stream="bulk",
            rate_limit=pick(settings.MAIL_BULK_RATE_LIMIT, settings.MAIL_RATE_LIMIT),
        )
