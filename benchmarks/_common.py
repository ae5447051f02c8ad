"""What every benchmark records beside its figures: the CPU, the revision, the machine's load."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str:
    """Short commit hash, flagged when the nasconv package has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ":/nasconv"], capture_output=True, text=True,
                               cwd=here).stdout.strip()
        return rev + (" (nasconv/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_avg() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file, so an interrupted run never leaves half a results file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class OtherCpu:
    """CPU used by OTHER processes (in cores, averaged) since the last :meth:`lap`.

    Machine-wide busy time from /proc/stat minus this process's own CPU time: a direct measure
    of how much a measurement competed with something else (the load average lags by minutes).
    """

    def __init__(self) -> None:
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait
        own = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()

    def lap(self) -> float:
        now, last = self._now(), self._last
        self._last = now
        if now is None or last is None or now[2] <= last[2]:
            return float("nan")
        return max(0.0, (now[0] - last[0]) - (now[1] - last[1])) / (now[2] - last[2])


def keep_freed_memory(limit: int = 1 << 30) -> str:
    """Tell glibc's malloc to keep freed blocks up to ``limit`` bytes instead of returning them to
    the system (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD), as jemalloc/tcmalloc do.

    Otherwise an allocation larger than glibc's mmap threshold (a batch-32 activation at 64x56x56
    is 25 MB) gets fresh pages every time and page-faults them in: on this project's machines
    batch-32 convolutions at 64x56x56 then time 8 or 26 ms from one call to the next (bimodal),
    and the faults, not the convolution, decide the comparison. Returns a line for the report.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not name:
        return "malloc as the platform sets it"
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(-3, limit) == 1 and libc.mallopt(-1, limit) == 1  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return "malloc as the platform sets it (mallopt unavailable)"
    return (f"glibc malloc keeps freed memory (mallopt M_MMAP_THRESHOLD = M_TRIM_THRESHOLD = {limit >> 20} MiB, "
            "as jemalloc/tcmalloc would): large outputs are not page-faulted afresh on every call")


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """One-sided exact p-value that ``a`` is stochastically larger than ``b``: the share of all
    ways to split the pooled values into groups of len(a) and len(b) whose U statistic (pairs
    a > b, ties half) is at least the observed one (252 splits for 5 + 5 seeds)."""
    from itertools import combinations

    def u(x: list[float], y: list[float]) -> float:
        return sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in x for q in y)

    pooled, k = list(a) + list(b), len(a)
    observed = u(a, b)
    splits = [u([pooled[i] for i in idx], [pooled[j] for j in range(len(pooled)) if j not in idx])
              for idx in combinations(range(len(pooled)), k)]
    return sum(1 for v in splits if v >= observed - 1e-12) / len(splits)


def write_results(folder: str | Path, name: str, text: str, res: Any) -> None:
    """``<folder>/<name>.md`` (the report) and ``<name>.json`` (every figure), each written atomically."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / f"{name}.md", text)
    write_atomic(out / f"{name}.json", json.dumps(res, indent=1, default=float))
