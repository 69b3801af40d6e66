"""Promotion periods: the latest PROMOTION_CRON tick, in UTC, and a valid cron."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.errors import ConfigError
from jobs.promotions.schedule import latest_tick, period_of
from jobs.settings import load_settings

NINE = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (NINE, NINE),  # exactly on the tick: that tick
        (NINE + timedelta(microseconds=500_000), NINE),
        (NINE + timedelta(hours=23, minutes=59), NINE),
        (NINE - timedelta(seconds=1), NINE - timedelta(days=1)),
    ],
)
def test_latest_tick_at_or_before_now_in_utc(now: datetime, expected: datetime) -> None:
    assert latest_tick("0 9 * * *", now) == expected


def test_a_non_utc_now_names_the_same_instant() -> None:
    paris = NINE.astimezone(ZoneInfo("Europe/Paris"))
    assert latest_tick("0 9 * * *", paris) == NINE


def test_six_fields_are_seconds() -> None:
    now = datetime(2026, 3, 10, 9, 0, 7, 300_000, tzinfo=UTC)
    assert latest_tick("* * * * * *", now) == now.replace(microsecond=0)
    assert latest_tick("* * * * * */5", now) == now.replace(second=5, microsecond=0)


def test_the_scheduled_timestamp_and_the_manual_tick_name_one_period() -> None:
    assert period_of(int(NINE.timestamp())) == latest_tick("0 9 * * *", NINE + timedelta(hours=1))


@pytest.mark.parametrize("cron", ["every day", "61 * * * *", "* * *"])
def test_a_bad_cron_is_refused_naming_the_variable(cron: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(PROMOTION_CRON=cron)
    assert "PROMOTION_CRON: is not a cron expression" in str(raised.value)
    assert repr(cron) in str(raised.value)


def test_promotion_settings_defaults_and_checks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("PROMOTION_CRON", "PROMOTION_CHUNK_SIZE", "UNSUBSCRIBE_URL", "UNSUBSCRIBE_MAILTO"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.PROMOTION_CRON, settings.PROMOTION_CHUNK_SIZE) == ("0 9 * * *", 500)
    assert settings.UNSUBSCRIBE_URL is None
    assert load_settings(UNSUBSCRIBE_URL="", UNSUBSCRIBE_MAILTO="").UNSUBSCRIBE_MAILTO is None
    with pytest.raises(ConfigError) as raised:
        load_settings(
            PROMOTION_CHUNK_SIZE="0", UNSUBSCRIBE_MAILTO="nope", UNSUBSCRIBE_URL="ftp://x"
        )
    names = [line.split(":")[0].strip() for line in str(raised.value).splitlines()[1:]]
    assert names == ["PROMOTION_CHUNK_SIZE", "UNSUBSCRIBE_URL", "UNSUBSCRIBE_MAILTO"]
