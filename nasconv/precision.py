"""Training precision: what a device computes natively, ``auto`` resolved, the autocast context.

bf16 and fp16 run the forward pass and the loss under ``torch.autocast`` (weights and optimizer
in fp32). A CPU computes them natively only with the instructions of :data:`NATIVE_CPU_FLAGS`;
without them torch emulates them, slower than fp32, so asking for one there is refused (a
benchmark can still measure it: ``allow_emulated``). fp16 on the CPU follows the same rule as
bf16 (torch's CPU autocast runs it; with a gradient scaler, as on CUDA).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, ContextManager

import torch

from nasconv.errors import DeviceError, UsageError
from nasconv.profile import device_name, pick_device

#: ``auto``: bf16 where the device computes it natively (see :func:`resolve_precision`), else fp32
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: CPU features (Linux /proc/cpuinfo: x86 ``flags``, arm64 ``Features``) that compute a reduced
#: precision natively; without them torch still runs it on the CPU, emulated and slower than fp32
NATIVE_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16", "bf16"), "fp16": ("avx512_fp16", "amx_fp16", "asimdhp")}
#: whether ``auto`` picks bf16 on a CPU with native bf16 (on CUDA it does wherever the GPU has it);
#: benchmarks/precision_fidelity.py measures whether bf16 ranks candidates as fp32 does, and how fast
AUTO_BF16_ON_CPU = True


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (x86 ``flags``, arm64 ``Features``)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def host_cpu_flags() -> frozenset[str]:
    """This machine's CPU flags; none where /proc/cpuinfo is missing (not Linux): then fp32 only."""
    try:
        return cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return frozenset()


def native_precision(precision: str, device: str) -> bool:
    """Whether ``device`` (``cpu``, ``cuda`` or ``cuda:N``) computes ``precision`` natively."""
    if precision == "fp32":
        return True
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return True  # a GPU of another machine (a Ray worker's): checked where it trains
        if precision == "fp16":
            return True
        with torch.cuda.device(torch.device(device)):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(host_cpu_flags() & set(NATIVE_CPU_FLAGS[precision]))


def resolve_precision(precision: str, device: str, *, allow_emulated: bool = False) -> str:
    """The precision training runs in on ``device`` (a name :func:`~nasconv.profile.pick_device` gives).

    ``auto``: bf16 where the device has it natively (a CUDA GPU of compute capability 8.0 or more;
    a CPU with AVX512-BF16 or AMX, when :data:`AUTO_BF16_ON_CPU`; a GPU that this process cannot
    see, as a search driver does not see its Ray workers'), else fp32. bf16 or fp16 asked for on a
    device without native support is refused unless ``allow_emulated``: torch would emulate it,
    slower than fp32 and not what a user of that precision wants.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = pick_device(device)
    if precision == "auto":
        on_cpu = not device.startswith("cuda")
        return "bf16" if native_precision("bf16", device) and (AUTO_BF16_ON_CPU or not on_cpu) else "fp32"
    if allow_emulated or native_precision(precision, device):
        return precision
    if device.startswith("cuda"):
        dev = torch.device(device)
        major, minor = torch.cuda.get_device_capability(dev)
        raise DeviceError(f"--precision {precision}: {torch.cuda.get_device_name(dev)} (compute capability "
                          f"{major}.{minor}) has no native {precision}; use --precision fp32 (or auto)")
    raise DeviceError(f"--precision {precision}: this CPU ({device_name(torch.device('cpu'))}) has no native "
                      f"{precision} instructions ({' or '.join(NATIVE_CPU_FLAGS[precision])}), and emulated it is "
                      f"slower than fp32; use --precision fp32 (or auto)")


def autocast(precision: str, device: torch.device) -> ContextManager[Any]:
    """``torch.autocast`` in ``precision`` on the device's type; nothing for fp32."""
    if precision in _AMP_DTYPES:
        return torch.autocast(device.type, dtype=_AMP_DTYPES[precision])
    return contextlib.nullcontext()
