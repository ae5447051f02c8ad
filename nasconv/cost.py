"""Analytic cost: exact params and MACs per image of a whole network, without building it.

Every formula of the backbone is here (stem, blocks, shortcut, head); each operator's own
formula lives with the operator (:func:`nasconv.ops.op_cost`). The results equal what PyTorch
counts on the built model (:func:`nasconv.flops.measure_cost`); the tests hold the two equal.
The search space's cost bounds (:mod:`nasconv.spaces`) add up the same functions.

Layer: imports ``arch`` and ``ops`` only (never ``build``: nothing here builds a module).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from nasconv.arch import ArchSpec, OpChoice
from nasconv.ops import clear_op_cost_cache, op_cost
from nasconv.ops.complexity import Cost, bn_cost, conv_cost, linear_cost, out_size

#: stem type -> (kernel, stride) of its convolution
STEM_CONV = {"imagenet": (7, 2), "small": (3, 2), "cifar": (3, 1)}


def stem_size(stem: str, h: int, w: int) -> tuple[int, int]:
    """Spatial size after the stem, for an ``h x w`` input."""
    if stem == "imagenet":  # 7x7/2 conv, then 3x3/2 max-pool with padding 1
        h, w = out_size(h, 7, 2), out_size(w, 7, 2)
        return out_size(h, 3, 2), out_size(w, 3, 2)
    if stem == "small":  # 3x3/2 conv
        return out_size(h, 3, 2), out_size(w, 3, 2)
    return h, w


def stem_cost(stem: str, c_in: int, width: int, res: int) -> Cost:
    """The stem's convolution and BN on a ``res x res`` input (the max-pool has no cost)."""
    k, s = STEM_CONV[stem]
    h = out_size(res, k, s)
    return conv_cost(c_in, width, k, h, h) + bn_cost(width)


def block_out_size(size: int, stride: int) -> int:
    """A block's output size: its 3 x 3 convolution (padding 1) carries the stride."""
    return out_size(size, 3, stride)


def _op_cost(choice: OpChoice, c_in: int, c_out: int, h: int, w: int, stride: int) -> Cost:
    return op_cost(choice.name, c_in, c_out, 3, h, w, stride, **choice.kwargs)


def shortcut_cost(c_in: int, c_out: int, stride: int, h: int, w: int) -> Cost:
    """A block's residual path: nothing for the identity, else a 1 x 1 projection and its BN."""
    if stride == 1 and c_in == c_out:
        return Cost()
    return conv_cost(c_in, c_out, 1, out_size(h, 1, stride), out_size(w, 1, stride)) + bn_cost(c_out)


def basic_block_cost(c_in: int, width: int, stride: int, op: OpChoice, h: int, w: int) -> tuple[Cost, int, int]:
    """Cost of a basic block on an ``h x w`` input, and its output size."""
    h2, w2 = block_out_size(h, stride), block_out_size(w, stride)
    cost = (_op_cost(op, c_in, width, h, w, stride) + bn_cost(width)
            + _op_cost(op, width, width, h2, w2, 1) + bn_cost(width)
            + shortcut_cost(c_in, width, stride, h, w))
    return cost, h2, w2


def bottleneck_cost(c_in: int, width: int, stride: int, op: OpChoice, h: int, w: int,
                    expansion: int = 4) -> tuple[Cost, int, int]:
    """Cost of a bottleneck block on an ``h x w`` input, and its output size."""
    c_out = width * expansion
    h2, w2 = block_out_size(h, stride), block_out_size(w, stride)
    cost = (conv_cost(c_in, width, 1, h, w) + bn_cost(width)
            + _op_cost(op, width, width, h, w, stride) + bn_cost(width)
            + conv_cost(width, c_out, 1, h2, w2) + bn_cost(c_out)
            + shortcut_cost(c_in, c_out, stride, h, w))
    return cost, h2, w2


def stage_cost(block: str, stride: int, expansion: int, op: OpChoice, depth: int, width: int, c_in: int,
               h: int, w: int) -> tuple[Cost, int, int]:
    """Cost of ``depth`` blocks (the first one strided, taking ``c_in`` channels), and the output size."""
    total = Cost()
    for i in range(depth):
        cb, s = (c_in, stride) if i == 0 else (width * expansion, 1)
        if block == "bottleneck":
            cost, h, w = bottleneck_cost(cb, width, s, op, h, w, expansion)
        else:
            cost, h, w = basic_block_cost(cb, width, s, op, h, w)
        total = total + cost
    return total, h, w


def head_cost(channels: int, num_classes: int) -> Cost:
    """The classifier after global average pooling (the pooling has no cost)."""
    return linear_cost(channels, num_classes)


def network_cost(arch: ArchSpec, resolution: int | None = None, *, num_classes: int | None = None,
                 in_channels: int | None = None) -> tuple[Cost, list[tuple[str, Cost]]]:
    """Analytic cost of the whole network and its parts (stem, layer1.., head)."""
    res = resolution or arch.resolution
    c_in = in_channels or arch.in_channels
    parts = [("stem", stem_cost(arch.stem, c_in, arch.stem_width, res))]
    h, w = stem_size(arch.stem, res, res)
    c = arch.stem_width
    for i, stage in enumerate(arch.stages):
        total, h, w = stage_cost(stage.block, stage.stride, stage.expansion, stage.op, stage.depth, stage.width,
                                 c, h, w)
        parts.append((f"layer{i + 1}", total))
        c = stage.out_channels
    parts.append(("head", head_cost(c, num_classes or arch.num_classes)))
    return sum((p for _, p in parts), Cost()), parts


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
    if getattr(arch, "kind", None) is not None:  # another kind of candidate (a user's model) costs itself
        return arch.estimate_cost(resolution, num_classes=num_classes, in_channels=in_channels)
    return _estimate(arch, resolution, num_classes, in_channels)


@functools.lru_cache(maxsize=16384)
def _estimate(arch: ArchSpec, resolution: int | None, num_classes: int | None,
              in_channels: int | None) -> NetworkCost:
    total, parts = network_cost(arch, resolution, num_classes=num_classes, in_channels=in_channels)
    return NetworkCost(total.params, total.macs, tuple(parts))


def clear_cost_caches() -> None:
    """Forget every cached cost, of networks and of operators (to time the cost model cold)."""
    _estimate.cache_clear()
    clear_op_cost_cache()
