"""A search's wall-clock budget (``nasconv search --time 10m``).

After the deadline no new candidate and no promotion starts; what is running may finish within a
grace period (:func:`grace_for`: the larger of :data:`GRACE_MIN_S` and :data:`GRACE_FRACTION` of
the budget). What is still running when the grace period ends is failed and queued again exactly
as Ctrl-C does, so that the same command continues it. The clock is injectable: tests decide
when time passes, never the machine's speed.

An evaluation that runs in the driver's own process (``--inline``) does not return to the loop
until it ends; a watchdog thread interrupts it (as Ctrl-C would, deferred while a trial is being
told) once the grace period is over.
"""

from __future__ import annotations

import _thread
import contextlib
import re
import signal
import threading
import time
from typing import Callable, Iterator

from nasconv.errors import UsageError

#: the grace period is never shorter than this (seconds) ...
GRACE_MIN_S = 60.0
#: ... nor than this fraction of the budget
GRACE_FRACTION = 0.10
#: the longest budget accepted (seconds): a year
MAX_TIME_S = 365 * 86400.0
#: how often the watchdog looks at the clock while an in-process evaluation runs (seconds)
WATCH_POLL_S = 0.2

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
DURATION_FORMS = "a number with a unit, s, m, h or d, parts allowed in a row: 90s, 10m, 2h, 1h30m"


def parse_duration(text: str, flag: str = "--time") -> float:
    """``10m`` -> 600.0 seconds. Parts add up (``1h30m``); refused: no unit, zero, negative,
    anything else, or more than a year."""
    s = str(text).strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise UsageError(f"{flag} must be {DURATION_FORMS}; got {text!r}")
    check_time_s(total, flag, text)
    return total


def check_time_s(seconds: float, flag: str = "--time", text: object = None) -> None:
    shown = repr(text) if text is not None else f"{seconds} s"
    if not seconds > 0:
        raise UsageError(f"{flag} must be longer than zero, got {shown}")
    if seconds > MAX_TIME_S:
        raise UsageError(f"{flag} must be at most a year (365d), got {shown}")


def grace_for(budget_s: float) -> float:
    """How long running evaluations may go on after the deadline."""
    return max(GRACE_MIN_S, GRACE_FRACTION * budget_s)


def format_duration(seconds: float) -> str:
    """600 -> ``10m``, 5400 -> ``1h30m``, 75.5 -> ``1m16s``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{sec}s" if sec and not h else "")


class OutOfTime(Exception):
    """Raised inside the driver's loop when the grace period ends with work still running."""


class Deadline:
    """The budget of one driver's run; ``budget_s`` None: no deadline (every test says False).

    ``clock`` (seconds, monotonic) is read when the deadline is made: that is its start.
    """

    def __init__(self, budget_s: float | None, grace_s: float | None = None, *,
                 clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or time.monotonic
        self.budget_s = budget_s
        self.grace_s = (grace_for(budget_s) if grace_s is None else grace_s) if budget_s is not None else None
        self.start = self.clock()
        #: set when the watchdog interrupted an in-process evaluation
        self.fired = False
        self._armed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.budget_s is not None

    def elapsed_s(self) -> float:
        return self.clock() - self.start

    def passed(self) -> bool:
        """Whether the deadline is past: nothing new may start."""
        return self.budget_s is not None and self.elapsed_s() >= self.budget_s

    def grace_over(self) -> bool:
        """Whether the grace period after the deadline is over too: what runs is stopped."""
        return self.budget_s is not None and self.elapsed_s() >= self.budget_s + (self.grace_s or 0.0)

    def overran(self, exc: BaseException) -> bool:
        """Whether ``exc`` is this deadline stopping the run (not a user's Ctrl-C)."""
        return isinstance(exc, OutOfTime) or (self.fired and type(exc) is KeyboardInterrupt)

    @property
    def reason(self) -> str:
        """The reason stored on the trials the deadline stopped."""
        return (f"stopped at the --time deadline ({format_duration(self.budget_s or 0)} plus "
                f"{format_duration(self.grace_s or 0)} of grace)")

    def check(self, running: int) -> None:
        """Raise :class:`OutOfTime` once the grace period is over with ``running`` evaluations."""
        if running and self.grace_over():
            raise OutOfTime(self.reason)

    # --- the watchdog for an evaluation in this process -------------------------------------
    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While the block runs (an in-process evaluation), interrupt it once the grace period is
        over. A no-op without a budget or away from the main thread."""
        if self.budget_s is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, daemon=True, name="nasconv-deadline")
            self._thread.start()
        with self._lock:
            self._armed = True
        try:
            yield
        finally:
            with self._lock:
                self._armed = False

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_POLL_S):
            with self._lock:
                if self._armed and not self.fired and self.grace_over():
                    self.fired = True
                    _interrupt_main()

    def close(self) -> None:
        """Stop the watchdog (it never fires after this returns)."""
        with self._lock:
            self._armed = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _interrupt_main() -> None:
    """Stop the main thread as Ctrl-C does: through the driver's SIGINT handler (so held while a
    trial is told). Where SIGINT is not Python's (ignored under ``nohup`` or in a background job
    of a shell without job control), ``interrupt_main`` does nothing: the KeyboardInterrupt is
    then raised in the main thread directly, at its next bytecode."""
    if callable(signal.getsignal(signal.SIGINT)):
        _thread.interrupt_main(signal.SIGINT)
        return
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.main_thread().ident),
                                               ctypes.py_object(KeyboardInterrupt))
