"""The throughput chart's geometry: one bar per minute, scaled to the busiest one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobs.ops.queries import Minute
from jobs.web import charts

NOW = datetime(2026, 12, 1, 12, 30, 40, tzinfo=UTC)


def _minute(ago: int, type_: str, n: int) -> Minute:
    at = NOW.replace(second=0) - timedelta(minutes=ago)
    return Minute(at, "email", "email.deliver", type_, n)


def test_bars_follow_the_counts_and_the_busiest_minute_fills_the_height() -> None:
    chart = charts.throughput(
        [
            _minute(0, "succeeded", 10),
            _minute(0, "failed", 10),
            _minute(59, "succeeded", 5),
            _minute(60, "succeeded", 1000),  # outside the hour: ignored
            _minute(30, "deferred_for_retry", 2),
        ],
        NOW,
    )
    assert len(chart.bars) == charts.MINUTES
    assert (chart.peak, chart.succeeded, chart.failed, chart.retried) == (20, 15, 10, 2)
    oldest, last = chart.bars[0], chart.bars[-1]
    assert last.ok_height == last.failed_height  # 10 and 10
    assert last.ok_height + last.failed_height == charts.HEIGHT - 4
    assert oldest.ok_height == (charts.HEIGHT - 4) / 4
    assert oldest.failed_height == 0
    assert last.failed_y + last.failed_height == last.ok_y  # stacked on the green part
    assert last.label == "12:30 UTC: 10 succeeded, 10 failed or retried"
    assert oldest.x < last.x


def test_an_idle_hour_draws_no_bar() -> None:
    chart = charts.throughput([], NOW)
    assert chart.peak == 0
    assert all(b.ok_height == 0 and b.failed_height == 0 for b in chart.bars)
