"""SPConv: split the input into representative and redundant channels.

Zhang et al., "Split to Be Slim: An Overlooked Redundancy in Vanilla Convolution", IJCAI 2020.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, bn_cost, conv_cost, out_size

#: the paper fixes the group count of the representative k x k conv at 2
_GROUPS = 2


def representative_channels(in_channels: int, ratio: float) -> int:
    """``int(in_channels * ratio)``, robust to float error (0.29 * 100 is 28.999...)."""
    return math.floor(in_channels * ratio + 1e-9)


class SPConv2d(nn.Module):
    """SPConv (Zhang et al., IJCAI 2020) as a drop-in for a ``k x k`` convolution.

    The first ``int(c_in * ratio)`` input channels (representative) go through a
    group-wise ``k x k`` conv plus a point-wise conv; the rest (redundant) through a
    point-wise conv only. A parameter-free, per-channel softmax over the two paths'
    global averages fuses them.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 ratio: float = 0.5) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, ratio=ratio)
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.ratio = kernel_size, stride, ratio
        self.rep_channels = representative_channels(in_channels, ratio)
        red_channels = in_channels - self.rep_channels
        self.gwc = nn.Conv2d(self.rep_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
                             groups=_GROUPS, bias=False)
        self.pwc = nn.Conv2d(self.rep_channels, out_channels, 1, bias=False)
        self.conv1x1 = nn.Conv2d(red_channels, out_channels, 1, bias=False)
        self.bn_rep = nn.BatchNorm2d(out_channels)
        self.bn_red = nn.BatchNorm2d(out_channels)
        # The paper average-pools (2 x 2 for stride 2) before the 1 x 1 paths instead of
        # striding them, so they see every pixel; ceil_mode keeps odd sizes equal to the
        # k x k conv's output, and a partial edge window averages only the pixels it covers.
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *, ratio: float = 0.5) -> None:
        check_conv_args("spconv", in_channels, out_channels, kernel_size, stride)
        require("spconv", isinstance(ratio, numbers.Real) and not isinstance(ratio, bool), "ratio",
                "alpha must be a number", ratio=ratio)
        require("spconv", 0 < ratio < 1, "ratio", "alpha must lie strictly between 0 and 1", ratio=ratio)
        c_rep = representative_channels(in_channels, ratio)
        require("spconv", c_rep >= _GROUPS and c_rep % _GROUPS == 0, "ratio",
                "int(in_channels * alpha) representative channels must be even and >= 2 (groups 2)",
                ratio=ratio, in_channels=in_channels, representative=c_rep)
        require("spconv", in_channels - c_rep >= 1, "ratio",
                "at least one redundant channel must remain (in_channels - int(in_channels * alpha) >= 1)",
                ratio=ratio, in_channels=in_channels, representative=c_rep)
        require("spconv", out_channels % _GROUPS == 0, "out_channels",
                "must be even (the representative k x k conv has 2 groups)", out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_rep, x_red = x[:, : self.rep_channels], x[:, self.rep_channels:]
        rep = self.bn_rep(self.gwc(x_rep) + self.pwc(self.pool(x_rep)))
        red = self.bn_red(self.conv1x1(self.pool(x_red)))
        # (N, C, 2): per-channel softmax between the two paths, no learned parameters
        weights = F.softmax(torch.stack((rep.mean((2, 3)), red.mean((2, 3))), dim=2), dim=2)
        return rep * weights[..., 0, None, None] + red * weights[..., 1, None, None]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ratio={self.ratio}")


def _spconv_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, ratio: float) -> Cost:
    c_rep = representative_channels(c_in, ratio)
    # ceil(h / stride): both the strided k x k conv and the ceil-mode pool give it
    h_out, w_out = out_size(h, k, stride), out_size(w, k, stride)
    return (conv_cost(c_rep, c_out, k, h_out, w_out, groups=_GROUPS)
            + conv_cost(c_rep, c_out, 1, h_out, w_out)
            + conv_cost(c_in - c_rep, c_out, 1, h_out, w_out)
            + bn_cost(c_out) * 2)


register_op(OpSpec(
    "spconv", SPConv2d, _spconv_cost,
    {"ratio": Hyper(0.5, "alpha: share of input channels that are representative (k x k group conv); "
                         "the rest get a 1 x 1 conv", float)},
    "split representative / redundant channels, parameter-free softmax fusion",
    "Zhang et al., Split to Be Slim: An Overlooked Redundancy in Vanilla Convolution, IJCAI 2020",
    examples=({"ratio": 0.5}, {"ratio": 0.25}, {"ratio": 0.125}),
))
