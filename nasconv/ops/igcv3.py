"""IGCV3: interleaved low-rank group convolutions (group 1x1 expand, depthwise, group 1x1 reduce).

Sun et al., "IGCV3: Interleaved Low-Rank Group Convolutions for Efficient Deep Neural
Networks", BMVC 2018.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, bn_cost, conv_cost, out_size


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _interleave(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Channel shuffle: channel ``i`` of group ``g`` moves to ``i * groups + g``."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class IGCV3Conv2d(nn.Module):
    """IGCV3 block body (Sun et al., BMVC 2018) as a drop-in for a ``k x k`` convolution.

    Group 1x1 conv ``c_in -> c_in*expansion`` (``g1`` groups) + BN + ReLU; permutation P1
    interleaving the ``g1`` groups; depthwise ``k x k`` (stride s) + BN + ReLU; group 1x1 conv
    ``-> c_out`` (``g2`` groups) + BN (linear bottleneck, no ReLU); permutation P2 interleaving
    the ``g2`` output groups, so that a following group conv again sees every group. The
    depthwise conv is per-channel, so P1 could equally sit after it; it is the 1x1 reduce
    whose groups must each draw from every expand group.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 g1: int = 2, g2: int = 2, expansion: int = 2) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, g1=g1, g2=g2, expansion=expansion)
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.g1, self.g2, self.expansion = g1, g2, expansion
        mid = in_channels * expansion
        self.expand = nn.Conv2d(in_channels, mid, 1, groups=g1, bias=False)
        self.bn_expand = nn.BatchNorm2d(mid)
        self.depthwise = nn.Conv2d(mid, mid, kernel_size, stride, padding=kernel_size // 2, groups=mid, bias=False)
        self.bn_depthwise = nn.BatchNorm2d(mid)
        self.reduce = nn.Conv2d(mid, out_channels, 1, groups=g2, bias=False)
        self.bn_reduce = nn.BatchNorm2d(out_channels)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
                 g1: int = 2, g2: int = 2, expansion: int = 2) -> None:
        check_conv_args("igcv3", in_channels, out_channels, kernel_size, stride)
        require("igcv3", _is_count(expansion), "expansion", "must be an integer >= 1", expansion=expansion)
        require("igcv3", _is_count(g1), "g1", "must be an integer >= 1", g1=g1)
        require("igcv3", _is_count(g2), "g2", "must be an integer >= 1", g2=g2)
        mid = in_channels * expansion
        require("igcv3", in_channels % g1 == 0, "g1", "must divide in_channels (and so in_channels*expansion)",
                g1=g1, in_channels=in_channels)
        require("igcv3", mid % g2 == 0, "g2", "must divide in_channels*expansion",
                g2=g2, in_channels=in_channels, expansion=expansion)
        require("igcv3", out_channels % g2 == 0, "g2", "must divide out_channels",
                g2=g2, out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn_expand(self.expand(x)))
        if self.g1 > 1:
            y = _interleave(y, self.g1)
        y = F.relu(self.bn_depthwise(self.depthwise(y)))
        y = self.bn_reduce(self.reduce(y))
        return _interleave(y, self.g2) if self.g2 > 1 else y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, g1={self.g1}, g2={self.g2}, expansion={self.expansion}")


def _igcv3_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int,
                g1: int = 2, g2: int = 2, expansion: int = 2) -> Cost:
    mid = c_in * expansion
    ho, wo = out_size(h, k, stride), out_size(w, k, stride)
    return (conv_cost(c_in, mid, 1, h, w, groups=g1) + bn_cost(mid)           # expand, input resolution
            + conv_cost(mid, mid, k, ho, wo, groups=mid) + bn_cost(mid)       # depthwise, strided
            + conv_cost(mid, c_out, 1, ho, wo, groups=g2) + bn_cost(c_out))   # reduce


register_op(OpSpec(
    "igcv3", IGCV3Conv2d, _igcv3_cost,
    {"g1": Hyper(2, "groups of the 1x1 expand conv"),
     "g2": Hyper(2, "groups of the 1x1 reduce conv"),
     "expansion": Hyper(2, "width of the depthwise layer as a multiple of in_channels")},
    "interleaved low-rank group convolutions (IGCV3)",
    "Sun et al., IGCV3: Interleaved Low-Rank Group Convolutions for Efficient Deep Neural Networks, BMVC 2018",
    examples=({}, {"g1": 1, "g2": 2, "expansion": 6}, {"g1": 4, "g2": 4, "expansion": 4}),
))
