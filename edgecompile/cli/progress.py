"""Progress of long steps, in one place, on stderr.

The library reports progress through a plain callback ``progress(done, total, what)``: ``what``
names the unit (e.g. ``"sequences"``), optionally followed by ``": "`` and what is happening now
(``"s of the 120 s upload timeout: avrdude attempt 2 of 10, no answer"``); a new unit starts a new
phase. :class:`Reporter` is that callback for the command line:

* on a terminal, one bar redrawn in place;
* otherwise (logs, pipes, CI) a line per step of progress with the elapsed time and an ETA: when
  at least a tenth of the phase is done since the last line *and* at least
  ``EDGECOMPILE_PROGRESS_S`` seconds (default 5) have passed, whichever comes later; the last
  line of every phase is always written.

Progress never goes to standard output, so ``--json -`` stays clean.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from edgecompile.errors import ConfigError

#: ``progress(done, total, what)``: the callback the library takes.
ProgressFn = Callable[[int, int, str], None]

ENV_INTERVAL = "EDGECOMPILE_PROGRESS_S"
DEFAULT_INTERVAL_S = 5.0
#: Least time between two redraws of the terminal bar.
BAR_REDRAW_S = 0.1
BAR_WIDTH = 24


def line_interval() -> float:
    """Seconds between two progress lines without a terminal (``EDGECOMPILE_PROGRESS_S``)."""
    text = os.environ.get(ENV_INTERVAL, "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0.0 <= value <= 3600.0):
        raise ConfigError(f"{ENV_INTERVAL}={text!r}: expected a number of seconds from 0 to 3600")
    return value


def format_seconds(seconds: float) -> str:
    """``"4.2 s"``, ``"1 min 05 s"``, ``"1 h 02 min"``."""
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class Reporter:
    """A ``progress(done, total, what)`` callback that writes to stderr (see the module doc).

    ``label`` starts every line (e.g. ``"verify"``). ``tty`` overrides the terminal test and
    ``interval`` the seconds between lines. ``enabled=False`` writes nothing. Thread-safe: a
    ticker thread and the main thread may both report. Use as a context manager (or call
    :meth:`close`) so that an unfinished phase still gets its last line; leaving the context
    with an exception only ends the bar's line (the error's own line follows).
    """

    def __init__(self, label: str, *, stream: TextIO | None = None, tty: bool | None = None,
                 interval: float | None = None, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval = line_interval() if interval is None else interval
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()  # a new phase starts when the last one ended (or at creation)
        self._what: str | None = None
        self._start = 0.0
        self._done = 0
        self._total = 0
        self._detail = ""
        self._shown_done = 0  # done at the last line written (no terminal)
        self._shown_at = 0.0
        self._finished = True  # the current phase has had its last line
        self._drawn_at = -math.inf
        self._bar_open = False

    # ------------------------------------------------------------------ the callback

    def __call__(self, done: int, total: int, what: str = "", detail: str = "") -> None:
        if not self.enabled:
            return
        unit, _, now_doing = what.partition(": ")
        detail = "; ".join(d for d in (now_doing, detail) if d)
        what = unit
        with self._lock:
            now = self._clock()
            if what != self._what or (self._finished and done < self._done):
                self._end_phase()
                start = self._since
                self._what, self._start, self._shown_done, self._shown_at = what, start, 0, start
                self._finished = False
            total = max(int(total), int(done), 1)
            self._done, self._total, self._detail = int(done), total, detail
            last = self._done >= total
            if self._finished and not last:
                self._finished = False
            if self.tty:
                if last or now - self._drawn_at >= BAR_REDRAW_S:
                    self._draw_bar(now)
                if last:
                    self._close_bar()
                    self._finished, self._since = True, now
            elif last:
                if not self._finished:
                    if self._worth_a_line(now):
                        self._write_line(now, final=True)
                    self._finished, self._since = True, now
            elif (self._done - self._shown_done >= total / 10
                  and now - self._shown_at >= self.interval):
                self._write_line(now, final=False)

    def close(self) -> None:
        """End the current phase: its last line (no terminal) or a newline after the bar."""
        with self._lock:
            self._end_phase()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # An error or interrupt: its one line says the rest. The interrupt may have come while
        # the lock was held: never wait for it long.
        locked = self._lock.acquire(timeout=1.0)
        try:
            self._close_bar()
            self._finished = True
        finally:
            if locked:
                self._lock.release()

    # ------------------------------------------------------------------ output

    def eta(self, now: float) -> float | None:
        """Seconds left at the phase's rate so far (None before the first step)."""
        elapsed = now - self._start
        if self._done <= 0 or elapsed <= 0:
            return None
        return elapsed / self._done * (self._total - self._done)

    def _end_phase(self) -> None:
        if self._what is None or self._finished:
            return
        now = self._clock()
        if self.tty:
            self._draw_bar(now)
            self._close_bar()
        elif self._worth_a_line(now):
            self._write_line(now, final=True)
        self._finished = True
        self._since = now

    def _worth_a_line(self, now: float) -> bool:
        """A phase's last line (no terminal) only after lines before it or a phase that took an
        interval: quick steps stay quiet, so a failure after them is still one line."""
        return self._shown_at > self._start or now - self._start >= self.interval

    def _counts(self) -> str:
        unit = f" {self._what}" if self._what else ""
        pct = 100.0 * self._done / self._total
        return f"{self._done}/{self._total}{unit} ({pct:.0f}%)"

    def _write_line(self, now: float, final: bool) -> None:
        elapsed = now - self._start
        if final and self._done >= self._total:
            tail = f"done in {format_seconds(elapsed)}"
        elif final:
            tail = f"stopped after {format_seconds(elapsed)}"
        else:
            eta = self.eta(now)
            tail = (f"{format_seconds(elapsed)} elapsed, ETA "
                    f"{'unknown' if eta is None else format_seconds(eta)}")
        detail = f"; {self._detail}" if self._detail else ""
        self._emit(f"{self.label}: {self._counts()}, {tail}{detail}\n")
        self._shown_done, self._shown_at = self._done, now

    def _draw_bar(self, now: float) -> None:
        filled = int(BAR_WIDTH * self._done / self._total)
        eta = self.eta(now)
        left = "" if eta is None or self._done >= self._total else f" ETA {format_seconds(eta)}"
        detail = f" {self._detail}" if self._detail else ""
        text = f"{self.label} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {self._counts()}{left}{detail}"
        width = _terminal_columns()
        self._emit("\r" + text[:width - 1].ljust(width - 1))
        self._drawn_at = now
        self._bar_open = True

    def _close_bar(self) -> None:
        if self._bar_open:
            self._emit("\n")
            self._bar_open = False

    def _emit(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: progress is not worth failing for
            self.enabled = False


def _terminal_columns() -> int:
    try:
        return max(20, os.get_terminal_size(sys.stderr.fileno()).columns)
    except (OSError, ValueError, AttributeError):
        return 80


def reporter(label: str, *, enabled: bool = True) -> Reporter:
    """The command line's reporter for ``label`` (stderr; a bar on a terminal, lines otherwise)."""
    return Reporter(label, enabled=enabled)


__all__ = ["DEFAULT_INTERVAL_S", "ENV_INTERVAL", "ProgressFn", "Reporter", "format_seconds",
           "line_interval", "reporter"]
