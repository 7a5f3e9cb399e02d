"""One way to say things: every message of the library goes through the standard ``logging`` module under the
``stability`` logger, and every long loop reports through one :class:`Progress` (steps done, rate, time left).

The library never configures logging itself (a library must not); the command line does
(:func:`configure_logging`): progress and messages on stderr when it is a terminal, quiet otherwise or with
``--quiet``, and always with ``--verbose``. In Python, ``logging.basicConfig(level=logging.INFO)`` shows them.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

__all__ = ["logger", "get_logger", "Progress", "configure_logging"]

logger = logging.getLogger("stability")


def get_logger(name: str) -> logging.Logger:
    """The logger of one part of the library, e.g. ``get_logger("train")`` → ``stability.train``."""
    return logging.getLogger(f"stability.{name}")


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _fmt_info(info: dict[str, Any]) -> str:
    parts = []
    for k, v in info.items():
        parts.append(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


class Progress:
    """Progress of a loop of ``total`` units of ``unit`` (steps, samples, points …) reported as
    ``what: 300/1500 steps (20%), 45.1 steps/s, ~27 s left[, extra info]`` — at most one line every ``every``
    seconds, always the first and the last. ``enabled=False`` makes it silent."""

    def __init__(self, total: int, what: str, *, unit: str = "steps", every: float = 2.0,
                 log: logging.Logger | None = None, enabled: bool = True) -> None:
        self.total, self.what, self.unit, self.every = int(total), what, unit, float(every)
        self.log = log or get_logger("progress")
        self.enabled = enabled
        self.done_units = 0
        self.t0 = time.perf_counter()
        self._last = -math.inf

    def advance(self, n: int = 1, **info: Any) -> None:
        """``n`` more units are done; ``info`` (e.g. ``loss=0.31``) is appended to the line."""
        self.done_units += int(n)
        now = time.perf_counter()
        last = self.done_units >= self.total
        if self.enabled and (last or now - self._last >= self.every):
            self._last = now
            self.log.info(self.line(now, **info))

    def line(self, now: float | None = None, **info: Any) -> str:
        now = time.perf_counter() if now is None else now
        dt = max(now - self.t0, 1e-9)
        rate = self.done_units / dt
        left = (self.total - self.done_units) / rate if rate > 0 else math.inf
        pct = 100.0 * self.done_units / max(self.total, 1)
        s = (f"{self.what}: {self.done_units}/{self.total} {self.unit} ({pct:.0f}%), {rate:.3g} {self.unit}/s, "
             + (f"~{_fmt_seconds(left)} left" if self.done_units < self.total else f"{_fmt_seconds(dt)} in all"))
        return s + (f", {_fmt_info(info)}" if info else "")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def configure_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    """The command line's logging: INFO lines on stderr when it is a terminal (or with ``verbose``), only warnings
    and errors otherwise (or with ``quiet``)."""
    level = logging.INFO if verbose or (not quiet and sys.stderr.isatty()) else logging.WARNING
    root = logging.getLogger("stability")
    root.handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
