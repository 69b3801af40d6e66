"""Charts drawn on the server as SVG geometry (the template writes the elements):
no script, nothing for the Content-Security-Policy to allow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from jobs.ops.queries import Minute

WIDTH = 600
HEIGHT = 120
MINUTES = 60


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    label: str  # the tooltip: minute and counts


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    succeeded: int
    failed: int
    retried: int


def throughput(rows: Iterable[Minute], now: datetime) -> Chart:
    """Succeeded (and failed + retried, stacked on top) per minute over the last hour."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    ok = [0] * MINUTES
    bad = [0] * MINUTES
    totals = {"succeeded": 0, "failed": 0, "deferred_for_retry": 0}
    for row in rows:
        index = int((row.minute - start).total_seconds() // 60)
        if not 0 <= index < MINUTES:
            continue
        totals[row.type] = totals.get(row.type, 0) + row.n
        if row.type == "succeeded":
            ok[index] += row.n
        else:
            bad[index] += row.n
    peak = max((a + b for a, b in zip(ok, bad, strict=True)), default=0)
    scale = (HEIGHT - 4) / peak if peak else 0.0
    step = WIDTH / MINUTES
    bars = []
    for i in range(MINUTES):
        ok_height = ok[i] * scale
        failed_height = bad[i] * scale
        moment = start + timedelta(minutes=i)
        bars.append(
            Bar(
                x=round(i * step + 1, 2),
                width=round(step - 2, 2),
                ok_y=round(HEIGHT - ok_height, 2),
                ok_height=round(ok_height, 2),
                failed_y=round(HEIGHT - ok_height - failed_height, 2),
                failed_height=round(failed_height, 2),
                label=f"{moment:%H:%M} UTC: {ok[i]} succeeded, {bad[i]} failed or retried",
            )
        )
    return Chart(
        WIDTH,
        HEIGHT,
        bars,
        peak,
        totals["succeeded"],
        totals["failed"],
        totals["deferred_for_retry"],
    )
