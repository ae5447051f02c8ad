"""Whole-network analytic cost: exact params and MACs per image, without building the model."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from nasconv.arch import ArchSpec
from nasconv.build import network_cost
from nasconv.ops._registry import Cost


@dataclass(frozen=True)
class NetworkCost:
    """``params`` and ``macs`` (multiply-accumulates per image) with a per-part breakdown."""

    params: int
    macs: int
    parts: tuple[tuple[str, Cost], ...]

    def to_dict(self) -> dict:
        return {"params": self.params, "macs": self.macs,
                "parts": [{"name": n, "params": c.params, "macs": c.macs} for n, c in self.parts]}


def estimate_cost(arch: ArchSpec, resolution: int | None = None, *, num_classes: int | None = None,
                  in_channels: int | None = None) -> NetworkCost:
    """Exact cost of ``build_model(arch, ...)`` at ``resolution`` (default: the arch's own)."""
    return _estimate(arch, resolution, num_classes, in_channels)


@functools.lru_cache(maxsize=16384)
def _estimate(arch: ArchSpec, resolution: int | None, num_classes: int | None,
              in_channels: int | None) -> NetworkCost:
    total, parts = network_cost(arch, resolution, num_classes=num_classes, in_channels=in_channels)
    return NetworkCost(total.params, total.macs, tuple(parts))
