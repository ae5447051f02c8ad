"""Latency of a model's forward pass: eval mode, inference mode, after warm-up, median and IQR.

On CUDA each run is timed with CUDA events after a synchronisation, so asynchronous kernel
launches are not mistaken for finished work.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from nasconv.errors import DeviceError, UsageError
from nasconv.stats import median_interval

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class LatencyResult:
    median_ms: float
    iqr_ms: float
    rel_iqr: float
    repeats: int
    #: True when the repeat or time cap was hit before the relative IQR fell below the target
    capped: bool
    batch_size: int
    resolution: int
    device: str
    device_name: str
    threads: int
    torch_version: str
    #: distribution-free 95% interval of the median over the timed repeats (:func:`nasconv.stats.median_interval`)
    ci_low_ms: float = 0.0
    ci_high_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_device(name: str) -> str:
    """The device a name stands for, without checking that it is there: ``auto`` is ``cuda``
    where torch sees a CUDA GPU, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` stay as given.

    What a configuration stores (and its evaluation cache key is made of): never ``auto``, whose
    meaning depends on the machine that reads it.
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise UsageError(f"unknown device {name!r}; accepted: auto, cpu, cuda, cuda:N")


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; a clear error when CUDA is asked for and absent."""
    name = pick_device(name)
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: no CUDA GPU is available here (torch {torch.__version__}, "
                          f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise DeviceError(f"--device {name}: only {n} CUDA device(s) here (cuda:0 to cuda:{n - 1})")
    return dev


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return name


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def measure_latency(model: nn.Module, *, in_channels: int, resolution: int, batch_size: int = 1,
                    device: str | torch.device = "cpu", warmup: int = 3, min_repeats: int = 10,
                    max_repeats: int = 200, target_rel_iqr: float = 0.05, max_time_s: float = 15.0) -> LatencyResult:
    """Median forward latency in ms, repeating until IQR/median < ``target_rel_iqr`` or a cap."""
    dev = resolve_device(device) if isinstance(device, str) else device
    if batch_size < 1 or resolution < 1:
        raise UsageError(f"latency batch size and resolution must be >= 1, got {batch_size}, {resolution}")
    model = model.to(dev).eval()
    x = torch.randn(batch_size, in_channels, resolution, resolution, device=dev)
    cuda = dev.type == "cuda"
    times: list[float] = []

    def once() -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(dev)
            start.record()
            model(x)
            end.record()
            torch.cuda.synchronize(dev)
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        model(x)
        return (time.perf_counter() - t0) * 1e3

    with torch.inference_mode():
        t_start = time.perf_counter()
        for _ in range(warmup):
            once()
        capped = True
        while len(times) < max_repeats:
            times.append(once())
            if len(times) >= min_repeats:
                q1, med, q3 = _quartiles(times)
                if (q3 - q1) / med < target_rel_iqr:
                    capped = False
                    break
                if time.perf_counter() - t_start > max_time_s:
                    break
    q1, med, q3 = _quartiles(times) if len(times) > 1 else (times[0], times[0], times[0])
    ci = median_interval(times)
    return LatencyResult(
        median_ms=med, iqr_ms=q3 - q1, rel_iqr=(q3 - q1) / med if med else 0.0, repeats=len(times), capped=capped,
        batch_size=batch_size, resolution=resolution, device=dev.type, device_name=device_name(dev),
        threads=torch.get_num_threads(), torch_version=torch.__version__,
        ci_low_ms=ci[0], ci_high_ms=ci[1],
    )
