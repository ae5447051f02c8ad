"""How much memory a supernet takes, stated (and refused) before anything is allocated.

The estimate: the supernet's parameters, built on the ``meta`` device (shapes, no storage), times
4 bytes for each of the fp32 weights, their gradients and AdamW's two moments; its buffers (BN
statistics) once; and the activations of one training step at the proxy batch and resolution,
for the largest architecture (every stage at its widest, deepest, heaviest choice), measured as
the output sizes of its modules in a ``meta`` forward pass, doubled for what the backward pass
keeps and creates. Available memory comes from ``/proc/meminfo`` (MemAvailable) or
``os.sysconf``; on CUDA from ``torch.cuda.mem_get_info``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasconv.arch import ArchSpec
from nasconv.errors import NasconvError
from nasconv.spaces import SearchSpace

#: fp32 weight, its gradient, AdamW's exp_avg and exp_avg_sq
BYTES_PER_PARAM = 16
#: the backward pass keeps each module's output and makes a gradient of the same size
ACTIVATION_FACTOR = 2
#: refused when the estimate is above this fraction of the available memory
HEADROOM = 0.8


class SupernetMemoryError(NasconvError):
    """A supernet that would not fit this machine's memory (refused before allocating)."""


@dataclass(frozen=True)
class MemoryEstimate:
    params: int
    buffers: int
    activation_bytes: int
    batch_size: int
    resolution: int

    @property
    def weights_bytes(self) -> int:
        return self.params * BYTES_PER_PARAM + self.buffers * 4

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "weights_optimizer_bytes": self.weights_bytes,
                "activation_bytes": self.activation_bytes, "total_bytes": self.total_bytes,
                "batch_size": self.batch_size, "resolution": self.resolution}

    def describe(self) -> str:
        return (f"{self.params / 1e6:.1f}M parameters: {gib(self.weights_bytes)} for weights, gradients and "
                f"AdamW state + {gib(self.activation_bytes)} of activations at batch {self.batch_size}, "
                f"{self.resolution}px = {gib(self.total_bytes)} (estimate)")


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def largest_arch(space: SearchSpace) -> ArchSpec:
    """Every stage at its widest and deepest, with its operator of most parameters per channel."""
    from nasconv.cost import estimate_cost

    choices = []
    for i, st in enumerate(space.stages):
        w, d = max(st.widths), max(st.depths)

        def params(op: Any, i: int = i, w: int = w, d: int = d) -> int:
            trial = [(s.ops[0], max(s.depths), max(s.widths)) for s in space.stages]
            trial[i] = (op, d, w)
            try:
                return estimate_cost(space.make_arch(trial)).params
            except NasconvError:
                return -1
        choices.append((max(st.ops, key=params), d, w))
    return space.make_arch(choices)


def estimate_memory(space: SearchSpace, proxy: Any, *, batch_size: int, seed: int = 0,
                    net: nn.Module | None = None) -> MemoryEstimate:
    """The supernet of ``space`` at ``proxy`` (:class:`~nasconv.supernet.model.ProxySettings`), on
    the ``meta`` device: nothing is allocated (``net``: that supernet, already built so)."""
    from nasconv.supernet.model import Supernet

    if net is None:
        with torch.device("meta"):
            net = Supernet(space, proxy, seed=seed)
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() for b in net.buffers())
    activations = _activation_elements(net, largest_arch(space), batch_size, proxy.resolution)
    return MemoryEstimate(params, buffers, activations * 4 * ACTIVATION_FACTOR, batch_size, proxy.resolution)


def _activation_elements(net: nn.Module, arch: ArchSpec, batch_size: int, resolution: int) -> int:
    sub = net.subnet(arch).train()
    total = 0

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel()

    leaves = [m for m in sub.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = torch.empty(batch_size, arch.in_channels, resolution, resolution, device="meta")
        sub(x)
    except (NotImplementedError, RuntimeError):  # an operator the meta device cannot run: by shapes
        total = batch_size * 3 * sum(m.weight.shape[0] for m in leaves if isinstance(m, nn.BatchNorm2d)) \
            * resolution * resolution
    finally:
        for h in handles:
            h.remove()
    return total


def available_bytes(device: str = "cpu") -> int | None:
    """Memory this process may still allocate on ``device`` (None where it cannot be read)."""
    if device.startswith("cuda"):
        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(estimate: MemoryEstimate, space_name: str, device: str = "cpu", *,
               available: int | None = None) -> None:
    """Refuse, in one line with the estimate, a supernet above :data:`HEADROOM` of the memory."""
    free = available if available is not None else available_bytes(device)
    if free is not None and estimate.total_bytes > HEADROOM * free:
        raise SupernetMemoryError(f"the {space_name} supernet does not fit: {estimate.describe()}, and {device} has "
                                  f"{gib(free)} available (at most {HEADROOM:.0%} of it is used)")
