"""Self-calibrated convolution: half the channels see a down-sampled context that gates their conv.

Liu et al., "Improving Convolutional Networks with Self-Calibrated Convolutions", CVPR 2020.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, bn_cost, conv_cost, out_size


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False), nn.BatchNorm2d(c_out))


class SCConv2d(nn.Module):
    """Self-calibrated convolution (Liu et al., CVPR 2020) as a drop-in for a ``k x k`` conv.

    The input splits into halves ``x1, x2``; the output into halves ``y1, y2``; four
    ``k x k`` convs, each followed by BN as in the paper's code (no activation at the end:
    the host's BN+ReLU follows):

    - ``y2 = K1(x2)`` (stride s), a plain conv;
    - ``y1 = K4(K3(x1) * sigmoid(x1 + up(K2(avgpool_r(x1)))))`` with K4 carrying the stride.

    ``avgpool_r`` uses ``ceil_mode`` (a partial edge window averages the pixels it covers),
    so any input size works; ``up`` is nearest interpolation back to the input size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 pooling_r: int = 4) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, pooling_r=pooling_r)
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.pooling_r = kernel_size, stride, pooling_r
        ci, co, k = in_channels // 2, out_channels // 2, kernel_size
        self.k1 = _conv_bn(ci, co, k, stride)
        self.pool = nn.AvgPool2d(pooling_r, pooling_r, ceil_mode=True) if pooling_r > 1 else nn.Identity()
        self.k2 = _conv_bn(ci, ci, k)
        self.k3 = _conv_bn(ci, ci, k)
        self.k4 = _conv_bn(ci, co, k, stride)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
                 pooling_r: int = 4) -> None:
        check_conv_args("scconv", in_channels, out_channels, kernel_size, stride)
        require("scconv", in_channels % 2 == 0, "in_channels",
                "must be even (split into a plain and a self-calibrated half)", in_channels=in_channels)
        require("scconv", out_channels % 2 == 0, "out_channels",
                "must be even (each half makes out_channels/2)", out_channels=out_channels)
        require("scconv", _is_count(pooling_r), "pooling_r", "r must be an integer >= 1", pooling_r=pooling_r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.in_channels // 2
        x1, x2 = x[:, :half], x[:, half:]
        context = F.interpolate(self.k2(self.pool(x1)), size=x1.shape[-2:], mode="nearest")
        y1 = self.k4(self.k3(x1) * torch.sigmoid(x1 + context))
        return torch.cat((y1, self.k1(x2)), dim=1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, pooling_r={self.pooling_r}")


def _scconv_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, pooling_r: int = 4) -> Cost:
    ci, co = c_in // 2, c_out // 2
    ho, wo = out_size(h, k, stride), out_size(w, k, stride)
    hp, wp = math.ceil(h / pooling_r), math.ceil(w / pooling_r)
    return (conv_cost(ci, co, k, ho, wo) + bn_cost(co)          # K1, plain half
            + conv_cost(ci, ci, k, hp, wp) + bn_cost(ci)        # K2, on the pooled map
            + conv_cost(ci, ci, k, h, w) + bn_cost(ci)          # K3, full resolution
            + conv_cost(ci, co, k, ho, wo) + bn_cost(co))       # K4, strided


register_op(OpSpec(
    "scconv", SCConv2d, _scconv_cost,
    {"pooling_r": Hyper(4, "r: down-sampling factor (average pooling) of the calibration context")},
    "self-calibrated convolution",
    "Liu et al., Improving Convolutional Networks with Self-Calibrated Convolutions, CVPR 2020",
    examples=({}, {"pooling_r": 2}),
))
