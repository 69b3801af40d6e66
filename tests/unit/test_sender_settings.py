"""Sender settings: MAIL_REPLY_TO, PROMOTION_POSTAL_ADDRESS, SECRET_KEY_FALLBACKS."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.errors import ConfigError
from jobs.settings import load_settings

NAMES = ("MAIL_REPLY_TO", "PROMOTION_POSTAL_ADDRESS", "SECRET_KEY_FALLBACKS")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_blank_values_mean_unset() -> None:
    settings = load_settings(**dict.fromkeys(NAMES, ""))
    assert settings.MAIL_REPLY_TO is None
    assert settings.PROMOTION_POSTAL_ADDRESS is None
    assert settings.secret_key_fallbacks == []


def test_values_are_read() -> None:
    settings = load_settings(
        MAIL_REPLY_TO="Help@Example.com",
        PROMOTION_POSTAL_ADDRESS=" Shop Inc., 1 Main St ",
        SECRET_KEY_FALLBACKS="old-key-number-one-123, old-key-number-two-456",
    )
    assert settings.MAIL_REPLY_TO == "Help@example.com"
    assert settings.PROMOTION_POSTAL_ADDRESS == "Shop Inc., 1 Main St"
    assert settings.secret_key_fallbacks == ["old-key-number-one-123", "old-key-number-two-456"]


def test_bad_values_name_the_variable_and_never_echo_a_secret() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(
            MAIL_REPLY_TO="not an address", SECRET_KEY_FALLBACKS="ok-long-key-0123456,short"
        )
    lines = str(error.value).splitlines()[1:]
    assert len(lines) == 2
    assert lines[0].strip().startswith("MAIL_REPLY_TO:")
    assert lines[1].strip().startswith("SECRET_KEY_FALLBACKS: every key must be at least 16")
    assert "short" not in str(error.value)
    with pytest.raises(ConfigError, match="PROMOTION_POSTAL_ADDRESS"):
        load_settings(PROMOTION_POSTAL_ADDRESS="a\x00b")
