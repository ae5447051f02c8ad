"""Interleaved Group Convolution, IGCV1 (Zhang et al., ICCV 2017).

A primary ``k x k`` group conv with ``L`` partitions of ``M`` channels (``c_in -> c_in``,
carries the stride), an interleaving permutation so that each secondary partition takes one
channel from every primary partition, a secondary ``1 x 1`` group conv with ``M`` partitions
of ``L`` channels (``c_in -> c_out``), and the permutation back. ``L * M == c_in``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, conv_cost, out_size


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def resolve_partitions(in_channels: int, L: int | None, M: int | None) -> tuple[int, int]:
    """``(L, M)`` with the missing one derived from ``L * M == in_channels`` (M = 2 if both missing).

    Raises :class:`HyperparameterError` for a setting that cannot satisfy the rule.
    """
    require("igc", L is None or _is_count(L), "L", "L must be an integer >= 1 or None", L=L)
    require("igc", M is None or _is_count(M), "M", "M must be an integer >= 1 or None", M=M)
    if L is None and M is None:
        M = 2
    if L is None:
        require("igc", in_channels % M == 0, "M", "M must divide in_channels (L = in_channels / M)",
                M=M, in_channels=in_channels)
        return in_channels // M, M
    if M is None:
        require("igc", in_channels % L == 0, "L", "L must divide in_channels (M = in_channels / L)",
                L=L, in_channels=in_channels)
        return L, in_channels // L
    # M's registry default is 2, so "L only" through create_op arrives as (L, 2): say how to derive M.
    require("igc", L * M == in_channels, "L", "L*M must equal in_channels (pass M=None to derive M from L)",
            L=L, M=M, in_channels=in_channels)
    return L, M


def _shuffle(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Channel ``r * cols + c`` moves to ``c * rows + r`` (a transpose of the channel grid)."""
    n, _, h, w = x.shape
    return x.reshape(n, rows, cols, h, w).transpose(1, 2).reshape(n, rows * cols, h, w)


class InterleavedGroupConv2d(nn.Module):
    """IGCV1 (Zhang et al., ICCV 2017): k x k group conv (L x M) -> interleave -> 1 x 1 group conv (M x L)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 L: int | None = None, M: int | None = None) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, L=L, M=M)
        super().__init__()
        L, M = resolve_partitions(in_channels, L, M)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.L = L
        self.M = M
        self.primary_weight = nn.Parameter(torch.empty(in_channels, M, kernel_size, kernel_size))
        self.secondary_weight = nn.Parameter(torch.empty(out_channels, L, 1, 1))
        # nn.Conv2d's default init for each of the two convs.
        for weight in (self.primary_weight, self.secondary_weight):
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 L: int | None = None, M: int | None = None) -> None:
        check_conv_args("igc", in_channels, out_channels, kernel_size, stride)
        _, M = resolve_partitions(in_channels, L, M)
        require("igc", out_channels % M == 0, "M", "M must divide out_channels (M secondary partitions)",
                M=M, out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.primary_weight, None, self.stride, self.kernel_size // 2, 1, self.L)
        # Primary order is (l, m); secondary partition m must hold channel m of every l.
        y = F.conv2d(_shuffle(y, self.L, self.M), self.secondary_weight, None, 1, 0, 1, self.M)
        # Permutation back: output (m, t) -> t * M + m, interleaving the secondary partitions.
        return _shuffle(y, self.M, self.out_channels // self.M)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, L={self.L}, M={self.M}")


def _igc_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int,
              L: int | None = None, M: int | None = None) -> Cost:
    L, M = resolve_partitions(c_in, L, M)
    ho, wo = out_size(h, k, stride), out_size(w, k, stride)
    return conv_cost(c_in, c_in, k, ho, wo, groups=L) + conv_cost(c_in, c_out, 1, ho, wo, groups=M)


register_op(OpSpec(
    "igc", InterleavedGroupConv2d, _igc_cost,
    {"L": Hyper(None, "primary partitions (k x k group conv, groups=L); None: in_channels / M"),
     "M": Hyper(2, "channels per primary partition = secondary partitions (1 x 1 group conv, groups=M)")},
    "interleaved group convolution (IGCV1)", "Zhang et al., Interleaved Group Convolutions, ICCV 2017",
    examples=({"M": 1}, {"M": 2}, {"M": 4}, {"L": 8, "M": None}),
))
