"""Involution: a K x K kernel generated per pixel from the input, shared by the channels of a group.

Li et al., "Involution: Inverting the Inherence of Convolution for Visual Recognition", CVPR 2021.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, bn_cost, conv_cost, out_size


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def resolve_kernel(kernel_size: int, kernel: int | None) -> int:
    """The involution kernel ``K``; ``None`` means the operator's ``kernel_size``."""
    return kernel_size if kernel is None else kernel


class Involution2d(nn.Module):
    """Involution (Li et al., CVPR 2021) as a drop-in for a ``k x k`` convolution.

    Kernel generation (per output pixel): average-pool by the stride (``ceil_mode``, so the
    map matches the conv's output size for odd inputs), 1x1 conv ``c_in -> c_in // r`` + BN +
    ReLU, 1x1 conv (with bias) ``-> K*K*G``, ``G = c_in / group_channels``. Aggregation:
    ``unfold`` the input (K x K, stride s, padding K//2) and, per pixel and group, multiply the
    ``group_channels x K*K`` patch by the ``K*K`` kernel with a batched matmul, so the
    ``c_in*K*K`` MACs per pixel are real, counted MACs. When ``c_in != c_out`` a 1x1 conv
    projects the result to ``c_out`` (after the involution, at the output resolution).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 kernel: int | None = None, group_channels: int = 16, reduction: int = 4) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride,
                      kernel=kernel, group_channels=group_channels, reduction=reduction)
        super().__init__()
        K = resolve_kernel(kernel_size, kernel)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.kernel, self.group_channels, self.reduction = K, group_channels, reduction
        self.groups = in_channels // group_channels
        mid = in_channels // reduction
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid),
                                    nn.ReLU(inplace=True))
        self.span = nn.Conv2d(mid, K * K * self.groups, 1)
        self.project = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
                 kernel: int | None = None, group_channels: int = 16, reduction: int = 4) -> None:
        check_conv_args("involution", in_channels, out_channels, kernel_size, stride)
        require("involution", kernel is None or (_is_count(kernel) and kernel % 2 == 1), "kernel",
                "K must be an odd integer >= 1 or None (the op's kernel_size)", kernel=kernel)
        require("involution", _is_count(group_channels), "group_channels",
                "must be an integer >= 1", group_channels=group_channels)
        require("involution", in_channels % group_channels == 0, "group_channels",
                "must divide in_channels (G = in_channels / group_channels groups)",
                group_channels=group_channels, in_channels=in_channels)
        require("involution", _is_count(reduction), "reduction", "r must be an integer >= 1", reduction=reduction)
        require("involution", reduction <= in_channels, "reduction",
                "r must not exceed in_channels (the generator has in_channels // r channels)",
                reduction=reduction, in_channels=in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        K, G, s = self.kernel, self.groups, self.stride
        kernels = self.span(self.reduce(self.pool(x)))            # (n, G*K*K, ho, wo)
        ho, wo = kernels.shape[-2:]
        patches = F.unfold(x, K, padding=K // 2, stride=s)         # (n, c*K*K, ho*wo)
        # batched over (n, G, pixel): (group_channels x K*K) @ (K*K x 1)
        patches = patches.reshape(n, G, self.group_channels, K * K, ho * wo).permute(0, 1, 4, 2, 3)
        kernels = kernels.reshape(n, G, K * K, ho * wo).permute(0, 1, 3, 2).unsqueeze(-1)
        out = torch.matmul(patches, kernels)                        # (n, G, ho*wo, group_channels, 1)
        out = out.squeeze(-1).permute(0, 1, 3, 2).reshape(n, c, ho, wo)
        return out if self.project is None else self.project(out)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, kernel={self.kernel}, group_channels={self.group_channels}, "
                f"reduction={self.reduction}")


def _involution_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int,
                     kernel: int | None = None, group_channels: int = 16, reduction: int = 4) -> Cost:
    K = resolve_kernel(k, kernel)
    G, mid = c_in // group_channels, c_in // reduction
    # stride pooling with ceil_mode gives the same size as a conv with an odd kernel
    ho, wo = out_size(h, k, stride), out_size(w, k, stride)
    cost = (conv_cost(c_in, mid, 1, ho, wo) + bn_cost(mid)
            + conv_cost(mid, K * K * G, 1, ho, wo, bias=True)
            + Cost(0, c_in * K * K * ho * wo))                      # the per-pixel multiply-sum (bmm)
    if c_in != c_out:
        cost = cost + conv_cost(c_in, c_out, 1, ho, wo)
    return cost


register_op(OpSpec(
    "involution", Involution2d, _involution_cost,
    {"kernel": Hyper(None, "K: involution kernel size (odd); None means the op's kernel_size"),
     "group_channels": Hyper(16, "channels sharing one generated kernel (G = c_in / group_channels)"),
     "reduction": Hyper(4, "r: the kernel generator's bottleneck is c_in // r channels")},
    "involution: per-pixel kernels generated from the input",
    "Li et al., Involution: Inverting the Inherence of Convolution for Visual Recognition, CVPR 2021",
    examples=({}, {"group_channels": 8, "reduction": 2}, {"kernel": 7}),
))
