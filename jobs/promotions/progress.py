"""Progress of `jobs promote`: a bar on a terminal, a log line now and then otherwise."""

from __future__ import annotations

import logging
import time
from typing import TextIO

from jobs.promotions.fanout import Chunk

logger = logging.getLogger(__name__)

LOG_EVERY = 5.0  # seconds between log lines when not on a terminal
WIDTH = 30


class FanOutProgress:
    """Called once per committed chunk (`jobs.promotions.promote.send_promotions(on_chunk=...)`)."""

    def __init__(self, totals: dict[str, int], stream: TextIO) -> None:
        self.totals = totals
        self.stream = stream
        self.tty = stream.isatty()
        self.done: dict[str, int] = {}
        self.started = time.monotonic()
        self.last_log = self.started
        self.current: str | None = None

    def __call__(self, chunk: Chunk) -> None:
        if self.current not in (None, chunk.campaign):
            self.finish()
        self.current = chunk.campaign
        done = self.done[chunk.campaign] = self.done.get(chunk.campaign, 0) + chunk.users
        total = max(self.totals.get(chunk.campaign, 0), done)
        rate = done / max(time.monotonic() - self.started, 1e-6)
        if self.tty:
            filled = WIDTH * done // total if total else WIDTH
            bar = "#" * filled + "." * (WIDTH - filled)
            self.stream.write(
                f"\r{chunk.campaign} [{bar}] {done:,}/{total:,} users  {rate:,.0f}/s "
            )
            self.stream.flush()
            if done >= total:
                self.finish()
        elif time.monotonic() - self.last_log >= LOG_EVERY:
            self.last_log = time.monotonic()
            logger.info(
                "promotion %r: %d/%d users queued (%.0f/s)", chunk.campaign, done, total, rate
            )

    def finish(self) -> None:
        """End the current bar's line."""
        if self.tty and self.current is not None:
            self.stream.write("\n")
            self.stream.flush()
        self.current = None
        self.started = time.monotonic()
