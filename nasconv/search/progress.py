"""What a search reports while it runs: the status it hands to its callbacks after each event,
and the default callback, a tqdm progress bar on a terminal (one line per finished trial elsewhere,
e.g. in a batch job's log)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

from tqdm import tqdm


@dataclass(frozen=True)
class SearchStatus:
    """The study as one driver sees it after an event."""

    evaluated: int
    total: int
    failed: int
    rejected: int
    cached: int
    running: int
    front: int
    hypervolume: float
    #: promotions (and repeats) finished by this driver, and the rung the front stands at
    promoted: int = 0
    rung: int | None = None

    def counts_text(self) -> str:
        promoted = f"{self.promoted} promoted, " if self.rung is not None else ""
        at = f" at rung {self.rung}" if self.rung is not None else ""
        return (f"{self.failed} failed, {self.rejected} rejected (over budget), {self.cached} cached, "
                f"{promoted}{self.running} running | front {self.front}{at}, HV {self.hypervolume:.4g}")


class SearchCallback(Protocol):
    """Observes a search: ``event`` is "start", "done", "error", "cached" or "promoted" (a promotion
    or repeat finished)."""

    def __call__(self, event: str, status: SearchStatus) -> None: ...

    def close(self) -> None: ...


class ProgressBar:
    """A tqdm bar over the evaluated candidates on a terminal; elsewhere one plain line per
    finished trial (a bar redrawn with carriage returns makes an unreadable log)."""

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file or sys.stderr
        self.tty = self.file.isatty()
        self.bar: tqdm | None = None
        self.t0 = time.monotonic()
        self.start: int | None = None

    def __call__(self, event: str, status: SearchStatus) -> None:
        if self.start is None:
            self.start = status.evaluated
        if self.tty:
            if self.bar is None:
                self.bar = tqdm(total=status.total, initial=min(status.evaluated, status.total), file=self.file,
                                bar_format="[{bar:20}] {n_fmt}/{total_fmt} evaluated, {postfix} | "
                                           "{elapsed}<{remaining}", ascii=" #", dynamic_ncols=True)
            self.bar.set_postfix_str(status.counts_text(), refresh=False)
            self.bar.update(min(status.evaluated, status.total) - self.bar.n)
            self.bar.refresh()
        elif event != "start":
            elapsed = time.monotonic() - self.t0
            new = status.evaluated - self.start
            eta = ""
            if new > 0 and status.evaluated < status.total:
                eta = f" eta {tqdm.format_interval(elapsed / new * (status.total - status.evaluated))}"
            bar = "#" * int(20 * min(status.evaluated, status.total) / max(1, status.total))
            self.file.write(f"{event}  [{bar:<20}] {status.evaluated}/{status.total} evaluated, "
                            f"{status.counts_text()} | {tqdm.format_interval(elapsed)}{eta}\n")
            self.file.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
