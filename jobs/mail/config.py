"""Mail settings as plain values, taken from `Settings` once at the edge."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from jobs.errors import ConfigError
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
        )
