"""A device to itself while a latency is timed: one measurement at a time per device on a node,
and no training step of another nasconv evaluation on that device meanwhile.

Every evaluating process on a node opens the same two lock files per device (in
``$NASCONV_LOCK_DIR``, default ``<tmp>/nasconv-locks-<uid>``: local to the node, so a Ray
cluster's nodes do not wait for each other). Training holds the device *shared* for one step at
a time; a latency measurement holds it *exclusively*. A waiting measurement first takes a
"turnstile" lock that every step passes through, so steps that start later wait behind it and
it is never starved by a stream of steps (a writer-preferring readers-writer lock out of two
``flock`` locks). A lock dies with its process: a killed worker never leaves the device locked.

On CUDA a step ends by synchronising with the device only when a measurement is waiting, so the
kernels it queued have run before the timing starts, and steps otherwise stay asynchronous.

GPUs are named by their UUID, not their index: Ray gives each worker its own
``CUDA_VISIBLE_DEVICES``, in which ``cuda:0`` of two workers can be different GPUs and the same
GPU can have different indices.

``NASCONV_LATENCY_LOCK=0`` turns the lock off (``benchmarks/latency_isolation.py`` measures what
it does that way); where the lock directory cannot be created, evaluation goes on unlocked and
says so in its metrics (``latency_isolated: false``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

__all__ = ["DeviceGate", "device_key", "lock_dir"]


def lock_dir() -> Path:
    given = os.environ.get("NASCONV_LOCK_DIR")
    if given:
        return Path(given).expanduser()
    return Path(tempfile.gettempdir()) / f"nasconv-locks-{os.getuid()}"


def device_key(device: torch.device) -> str:
    """``cpu`` for the node's CPU; ``cuda-<UUID>`` for a GPU (index where torch has no UUID)."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        return f"cuda-{uuid}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    return f"cuda-{ids[index] if index < len(ids) else index}"


def _enabled() -> bool:
    return os.environ.get("NASCONV_LATENCY_LOCK", "1").strip().lower() not in ("0", "false", "no", "off")


class DeviceGate:
    """The lock of one device. Use one gate per evaluation (it holds two file descriptors, which
    :meth:`close` releases): two gates on the same device exclude each other even within one
    process, because ``flock`` locks belong to open files, not to processes."""

    def __init__(self, device: torch.device, *, directory: Path | None = None, key: str | None = None) -> None:
        self.device = device
        self.key = key or device_key(device)
        self.isolated = False
        self._fds: tuple[int, int] | None = None
        self._sync: Callable[[], None] | None = None
        if not _enabled():
            return
        base = (directory or lock_dir()) / re.sub(r"[^A-Za-z0-9_.-]", "_", self.key)
        fds: list[int] = []
        try:
            base.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            for part in ("turnstile", "rw"):
                fds.append(os.open(f"{base}.{part}.lock", os.O_RDWR | os.O_CREAT, 0o600))
        except OSError:
            for fd in fds:
                os.close(fd)
            return
        self._fds = (fds[0], fds[1])
        self.isolated = True
        if device.type == "cuda":
            self._sync = lambda: torch.cuda.synchronize(device)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Hold the device shared for one training (or validation) step."""
        if self._fds is None:
            yield
            return
        turnstile, rw = self._fds
        fcntl.flock(turnstile, fcntl.LOCK_EX)  # waits while a measurement is waiting or running
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(rw, fcntl.LOCK_SH)
        try:
            yield
        finally:
            if self._sync is not None and self._measurement_waiting(turnstile):
                self._sync()
            fcntl.flock(rw, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def timing(self) -> Iterator[float]:
        """Hold the device exclusively; yields the seconds spent waiting for it."""
        t0 = time.perf_counter()
        if self._fds is None:
            yield 0.0
            return
        turnstile, rw = self._fds
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(rw, fcntl.LOCK_EX)
            try:
                yield time.perf_counter() - t0
            finally:
                fcntl.flock(rw, fcntl.LOCK_UN)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)

    @staticmethod
    def _measurement_waiting(turnstile: int) -> bool:
        try:
            fcntl.flock(turnstile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def __enter__(self) -> "DeviceGate":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
