"""What every benchmark records beside its figures: the CPU, the revision, the machine's load."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path


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
