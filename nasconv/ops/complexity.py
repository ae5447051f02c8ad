"""Cost primitives: the :class:`Cost` of a layer and the exact formulas of PyTorch's own layers.

Operator files (their ``cost`` functions) and the network cost model (:mod:`nasconv.cost`) add
these up; nothing here builds a module. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """Integer cost of a layer or network, per image. ``macs`` = multiply-accumulates."""

    params: int = 0
    macs: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs)

    def __mul__(self, n: int) -> "Cost":
        return Cost(self.params * n, self.macs * n)

    __rmul__ = __mul__


def out_size(size: int, kernel_size: int, stride: int) -> int:
    """Output size of a conv with padding ``k // 2``."""
    pad = kernel_size // 2
    return (size + 2 * pad - kernel_size) // stride + 1


def conv_cost(c_in: int, c_out: int, k: int, h_out: int, w_out: int, groups: int = 1, bias: bool = False) -> Cost:
    """Cost of one ``nn.Conv2d`` given its output size (bias adds params, not MACs)."""
    params = c_out * (c_in // groups) * k * k + (c_out if bias else 0)
    return Cost(params, c_out * h_out * w_out * (c_in // groups) * k * k)


def linear_cost(n_in: int, n_out: int, bias: bool = True) -> Cost:
    return Cost(n_in * n_out + (n_out if bias else 0), n_in * n_out)


def bn_cost(channels: int) -> Cost:
    """BatchNorm: weight and bias are parameters; its arithmetic is element-wise (0 MACs)."""
    return Cost(2 * channels, 0)
