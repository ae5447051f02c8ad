"""Networks timed together: one forward pass of each in turn, round after round, so that whatever
the machine's speed does during those seconds happens to all of them.

Two timings taken minutes apart differ by the machine's drift as well as by the networks: on this
project's shared VMs the same baseline timed 6.72 ms and, forty minutes later, 8.25 ms, where a
front member timed 6.20 ms in between; the interval of each timing (over its own repeats) covers
neither. Within one round the networks run milliseconds apart, so the ratio of two networks'
timings in a round carries next to none of the drift: their median ratio over the rounds, with a
distribution-free interval (:func:`nasconv.stats.median_interval`), says whether one is faster
than the other (as ``benchmarks/latency_model.py``'s drift-free paired timing does for a network
and a reference). The order of the networks is rotated from round to round, so that none always
runs just after another.

:func:`time_interleaved` is the loop, with the clock and the forward passes given (tests inject
known timings); :func:`time_together` builds the networks and times them on a device.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import torch

from nasconv.arch import ArchSpec
from nasconv.build import build_model
from nasconv.profile import device_name, resolve_device

#: rounds wanted (31 rounds: the median ratio's 95% interval lies between ranks 10 and 22)
PAIRED_ROUNDS = 31
#: fewest rounds whatever the time: below 6 no distribution-free interval of a median reaches 95%
PAIRED_MIN_ROUNDS = 6
#: untimed rounds first (allocations, caches, lazy initialisation)
PAIRED_WARMUP = 2


@dataclass(frozen=True)
class PairedTiming:
    """Per network key, its forward time (ms) in each round; round ``k`` of every network was taken
    within the same few milliseconds."""

    timings_ms: dict[str, list[float]]
    rounds: int
    #: when the rounds started (UTC, ISO 8601) and how long they took
    started: str
    seconds: float
    device: str
    device_name: str
    threads: int
    batch: int
    resolution: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_interleaved(forwards: Mapping[str, Callable[[], Any]], *, rounds: int = PAIRED_ROUNDS,
                     min_rounds: int = PAIRED_MIN_ROUNDS, max_time_s: float = 10.0, warmup: int = PAIRED_WARMUP,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Each forward timed once per round, in an order rotated each round, for ``rounds`` rounds or
    until ``max_time_s`` has passed (after at least ``min_rounds``); per key, its times in ms."""
    keys = list(forwards)
    if not keys:
        return {}
    for _ in range(warmup):
        for k in keys:
            forwards[k]()
    out: dict[str, list[float]] = {k: [] for k in keys}
    start = clock()
    r = 0
    while r < rounds and (r < min_rounds or clock() - start < max_time_s):
        shift = r % len(keys)
        for k in keys[shift:] + keys[:shift]:
            t0 = clock()
            forwards[k]()
            out[k].append((clock() - t0) * 1e3)
        r += 1
    return out


def time_together(archs: Mapping[str, ArchSpec], *, device: str = "cpu", threads: int | None = None, batch: int = 1,
                  resolution: int | None = None, max_time_s: float = 10.0, rounds: int = PAIRED_ROUNDS
                  ) -> PairedTiming:
    """``archs`` (key -> architecture) built and timed together on ``device``, as an evaluation
    times one (eval mode, inference mode, ``batch`` images at ``resolution`` px, default each
    architecture's own, with ``threads`` torch threads); the caller holds the device
    (:class:`nasconv.device_lock.DeviceGate`)."""
    dev = resolve_device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    forwards: dict[str, Callable[[], Any]] = {}
    for key, arch in archs.items():
        torch.manual_seed(0)
        model = build_model(arch).to(dev).eval()
        px = resolution or arch.resolution
        x = torch.randn(batch, arch.in_channels, px, px, device=dev)

        def forward(m: torch.nn.Module = model, x: torch.Tensor = x) -> None:
            sync()
            m(x)
            sync()

        forwards[key] = forward
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            timings = time_interleaved(forwards, rounds=rounds, max_time_s=max_time_s)
    finally:
        used = torch.get_num_threads()
        torch.set_num_threads(before)
    return PairedTiming(timings, len(next(iter(timings.values()), [])),
                        started.isoformat(timespec="seconds"), time.perf_counter() - t0, dev.type,
                        device_name(dev), used, batch, resolution)
