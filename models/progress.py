"""Progress lines for long work, readable in a log (not a terminal bar): what, how far, the rate, the time
left. Records go to the ``reclab.progress`` logger, which the train stage forwards to the Prefect run's log
(``tasks/logs.py``); work that ends within ``every`` seconds logs nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

LOG = logging.getLogger("reclab.progress")


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """Counts ``total`` units of work; logs ``<what>: <done>/<total> <unit> (<pct>%), <rate> <unit>/s, ETA
    <left>`` at most every ``every`` seconds, and a closing line when it logged any."""

    def __init__(
        self,
        what: str,
        total: int,
        unit: str,
        *,
        every: float = 10.0,
        logger: logging.Logger = LOG,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what, self.total, self.unit, self.every = what, max(int(total), 0), unit, every
        self.logger, self.clock = logger, clock
        self.done = 0
        self.start = self.last = clock()
        self.lines = 0

    def advance(self, units: int = 1, *, total: int | None = None, note: str = "") -> None:
        """``units`` more done (``total``: a corrected total, e.g. once a tuned epoch count is known)."""
        self.done += units
        if total is not None:
            self.total = total
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.lines += 1
            self.logger.info(self.line(now, note))

    def line(self, now: float, note: str = "") -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = f", ETA {duration((self.total - self.done) / rate)}" if rate > 0 and self.total >= self.done else ""
        extra = f" {note}" if note else ""
        return f"{self.what}: {self.done}/{self.total} {self.unit}{share}{extra}, {rate:.3g} {self.unit}/s{left}"

    def finish(self, note: str = "") -> None:
        """The closing line (only after progress lines: short work stays silent)."""
        if self.lines:
            extra = f" {note}" if note else ""
            self.logger.info(f"{self.what}: {self.done} {self.unit} in {duration(self.clock() - self.start)}{extra}")
