"""Ghost module: a few intrinsic feature maps from a real conv, the rest from cheap depthwise ops.

Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, bn_cost, conv_cost, out_size


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def intrinsic_channels(out_channels: int, ratio: int) -> int:
    """``m = ceil(c_out / s)``: the channels the primary conv makes."""
    return math.ceil(out_channels / ratio)


class GhostConv2d(nn.Module):
    """Ghost module (Han et al., CVPR 2020) as a drop-in for a ``k x k`` convolution.

    The primary ``k x k`` conv (carries the stride) makes ``m = ceil(c_out / s)`` intrinsic
    maps (+BN+ReLU); a depthwise ``d x d`` conv (stride 1, ``groups=m``) makes ``s - 1`` ghost
    maps from each intrinsic map (+BN+ReLU); the two are concatenated and sliced to ``c_out``.
    Like the paper's Ghost module with ``relu=True``, so the output is post-activation;
    ``ratio=1`` is exactly ``relu(bn(conv(x)))`` (no cheap branch is built).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 ratio: int = 2, dw_kernel: int = 3) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, ratio=ratio, dw_kernel=dw_kernel)
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.ratio, self.dw_kernel = ratio, dw_kernel
        m = intrinsic_channels(out_channels, ratio)
        self.primary = nn.Sequential(
            nn.Conv2d(in_channels, m, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(m),
            nn.ReLU(inplace=True),
        )
        ghosts = m * (ratio - 1)
        # ratio 1: no ghost maps at all (a conv with 0 output channels is not a valid module)
        self.cheap = nn.Sequential(
            nn.Conv2d(m, ghosts, dw_kernel, 1, padding=dw_kernel // 2, groups=m, bias=False),
            nn.BatchNorm2d(ghosts),
            nn.ReLU(inplace=True),
        ) if ghosts else None

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
                 ratio: int = 2, dw_kernel: int = 3) -> None:
        check_conv_args("ghost", in_channels, out_channels, kernel_size, stride)
        require("ghost", _is_count(ratio), "ratio", "s must be an integer >= 1", ratio=ratio)
        require("ghost", ratio <= out_channels, "ratio",
                "s must not exceed out_channels (more would make ghost maps only to discard them)",
                ratio=ratio, out_channels=out_channels)
        require("ghost", _is_count(dw_kernel) and dw_kernel % 2 == 1, "dw_kernel",
                "d must be an odd integer >= 1 (padding d//2 keeps the size)", dw_kernel=dw_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary(x)
        if self.cheap is None:
            return intrinsic
        out = torch.cat((intrinsic, self.cheap(intrinsic)), dim=1)
        return out[:, : self.out_channels]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, ratio={self.ratio}, dw_kernel={self.dw_kernel}")


def _ghost_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int,
                ratio: int = 2, dw_kernel: int = 3) -> Cost:
    ho, wo = out_size(h, k, stride), out_size(w, k, stride)
    m = intrinsic_channels(c_out, ratio)
    cost = conv_cost(c_in, m, k, ho, wo) + bn_cost(m)
    ghosts = m * (ratio - 1)
    if ghosts:
        # the ghosts beyond c_out are computed and then sliced away: they still cost
        cost = cost + conv_cost(m, ghosts, dw_kernel, ho, wo, groups=m) + bn_cost(ghosts)
    return cost


register_op(OpSpec(
    "ghost", GhostConv2d, _ghost_cost,
    {"ratio": Hyper(2, "s: c_out / intrinsic channels; the primary conv makes ceil(c_out/s), "
                       "depthwise ops make the other (s-1)/s"),
     "dw_kernel": Hyper(3, "d: kernel size of the cheap depthwise op (odd)")},
    "Ghost module: primary conv + cheap depthwise ghost maps",
    "Han et al., GhostNet: More Features from Cheap Operations, CVPR 2020",
    examples=({}, {"ratio": 3}, {"ratio": 4, "dw_kernel": 5}),
))
