"""HetConv: heterogeneous kernels (Singh et al., CVPR 2019).

In every filter, ``1/P`` of the input channels get a ``k x k`` kernel and the rest a
``1 x 1`` kernel. The ``k x k`` positions shift from filter to filter: filter ``j`` has its
``k x k`` kernels on the input channels ``i`` with ``i % P == j % P``.

Built without masks or per-filter loops: the input channels are gathered into the ``P``
residue classes, a ``groups=P`` ``k x k`` conv covers each class, and a ``groups=P``
``1 x 1`` conv covers, for each class, the ``P - 1`` other classes (gathered once more).
Only real weights exist, so parameters and MACs equal the paper's
``c_in * c_out * (k^2/P + 1 - 1/P)`` (times ``H' * W'`` for MACs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, conv_cost, out_size


class HetConv2d(nn.Module):
    """HetConv (Singh et al., CVPR 2019) with part ``P``: 1/P of each filter is k x k, the rest 1 x 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 part: int = 4) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, part=part)
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.part = part
        p, cin_p, cout_p = part, in_channels // part, out_channels // part
        # Grouped layout: output channel r*cout_p + t of the grouped convs is filter t*P + r.
        self.weight = nn.Parameter(torch.empty(out_channels, cin_p, kernel_size, kernel_size))
        if p > 1:
            self.pointwise_weight = nn.Parameter(torch.empty(out_channels, (p - 1) * cin_p, 1, 1))
            kxk_index = [u * p + r for r in range(p) for u in range(cin_p)]
            pw_index = [u * p + q for r in range(p) for q in range(p) if q != r for u in range(cin_p)]
            out_index = [(j % p) * cout_p + j // p for j in range(out_channels)]
            # Not persistent: derived from the shape, so state dicts hold only weights.
            self.register_buffer("kxk_index", torch.tensor(kxk_index), persistent=False)
            self.register_buffer("pw_index", torch.tensor(pw_index), persistent=False)
            self.register_buffer("out_index", torch.tensor(out_index), persistent=False)
        else:
            self.register_parameter("pointwise_weight", None)
        # nn.Conv2d's default init draws from U(+-1/sqrt(fan_in)); use each filter's real fan-in
        # (k x k part plus 1 x 1 part) so the output scale matches a plain conv at start.
        bound = 1.0 / math.sqrt(cin_p * kernel_size * kernel_size + (p - 1) * cin_p)
        for w in (self.weight, self.pointwise_weight):
            if w is not None:
                nn.init.uniform_(w, -bound, bound)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, part: int) -> None:
        check_conv_args("hetconv", in_channels, out_channels, kernel_size, stride)
        require("hetconv", isinstance(part, int) and not isinstance(part, bool) and part >= 1, "part",
                "P must be an integer >= 1", part=part)
        require("hetconv", part <= min(in_channels, out_channels), "part",
                "P must not exceed in_channels or out_channels",
                part=part, in_channels=in_channels, out_channels=out_channels)
        require("hetconv", in_channels % part == 0 and out_channels % part == 0, "part",
                "P must divide in_channels and out_channels",
                part=part, in_channels=in_channels, out_channels=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, s = self.part, self.stride
        if p == 1:
            return F.conv2d(x, self.weight, None, s, self.kernel_size // 2)
        y = F.conv2d(x.index_select(1, self.kxk_index), self.weight, None, s, self.kernel_size // 2, 1, p)
        # A strided 1 x 1 conv without padding reads the input pixels the k x k kernel centres on;
        # striding before the gather keeps the (P-1)x wider gathered tensor small.
        xs = x[:, :, ::s, ::s] if s > 1 else x
        y = y + F.conv2d(xs.index_select(1, self.pw_index), self.pointwise_weight, None, 1, 0, 1, p)
        return y.index_select(1, self.out_index)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, part={self.part}")


def _hetconv_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, part: int) -> Cost:
    ho, wo = out_size(h, k, stride), out_size(w, k, stride)
    cost = conv_cost(c_in, c_out, k, ho, wo, groups=part)
    if part > 1:
        cost = cost + conv_cost((part - 1) * c_in, c_out, 1, ho, wo, groups=part)
    return cost


register_op(OpSpec(
    "hetconv", HetConv2d, _hetconv_cost,
    {"part": Hyper(4, "P: 1/P of each filter's input channels get a k x k kernel, the rest 1 x 1")},
    "heterogeneous-kernel convolution", "Singh et al., HetConv, CVPR 2019",
    examples=({"part": 1}, {"part": 2}, {"part": 4}, {"part": 8}),
))
