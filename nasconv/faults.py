"""Test seams for the fault-tolerance tests: places where a test may trace, delay or kill a process.

Does nothing unless one of the ``NASCONV_TEST_*`` variables is set. May import: the standard library.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

_fault_counts: dict[str, int] = {}


def fault_point(name: str, detail: Any = "") -> None:
    """Test hook for the fault-tolerance tests; does nothing unless one of these is set.

    ``NASCONV_TEST_TRACE=FILE`` appends ``name detail pid`` to FILE at each point passed.
    ``NASCONV_TEST_CRASH_AT=name:n`` SIGKILLs this process the n-th time it reaches ``name``
    (points: ``during_eval`` in :func:`run_job`; ``after_ask``, ``before_tell``, ``after_tell``,
    ``during_snapshot`` in the search driver).
    ``NASCONV_TEST_CRASH_MARK=FILE`` with it: only the first process to get there is killed
    (FILE, created just before, marks that it happened), so a retried task then succeeds.
    ``NASCONV_TEST_DELAY=name:seconds`` sleeps there (makes "mid-evaluation" a wide window).
    """
    trace, crash = os.environ.get("NASCONV_TEST_TRACE"), os.environ.get("NASCONV_TEST_CRASH_AT")
    delay = os.environ.get("NASCONV_TEST_DELAY")
    if trace:
        with open(trace, "a") as f:
            f.write(f"{name} {detail} {os.getpid()}\n")
    if delay and delay.partition(":")[0] == name:  # after the trace: a test sees the point, then acts
        time.sleep(float(delay.partition(":")[2] or 1))
    if not crash:
        return
    if crash and crash.partition(":")[0] == name:
        _fault_counts[name] = _fault_counts.get(name, 0) + 1
        if _fault_counts[name] == int(crash.partition(":")[2] or 1):
            mark = os.environ.get("NASCONV_TEST_CRASH_MARK")
            if mark:
                try:
                    os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    return
            os.kill(os.getpid(), signal.SIGKILL)


#: ``NASCONV_TEST_SIMULATE_CUDA=1``: the seam of the GPU-scheduling tests (machines without a GPU).
#: A ``cuda`` device then stands for the GPU Ray assigned the task (``CUDA_VISIBLE_DEVICES``): the
#: evaluation computes on the CPU in its place and records ``device: cuda`` with
#: ``simulated_cuda: true``; its latency lock is that GPU's. Never set outside tests.
SIMULATE_CUDA_ENV = "NASCONV_TEST_SIMULATE_CUDA"


def simulated_cuda() -> bool:
    return os.environ.get(SIMULATE_CUDA_ENV, "") == "1"
