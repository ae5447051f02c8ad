"""Split attention: R radix splits of a grouped conv, fused by a softmax attention across splits.

Zhang et al., "ResNeSt: Split-Attention Networks", 2020.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, bn_cost, conv_cost, out_size

#: the paper's floor on the attention bottleneck width
_MIN_INTER = 32


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def inter_channels(in_channels: int, radix: int, cardinality: int, reduction: int) -> int:
    """``max(c_in * R // reduction, 32)`` rounded up to a multiple of the cardinality."""
    inter = max(in_channels * radix // reduction, _MIN_INTER)
    return math.ceil(inter / cardinality) * cardinality


class SplitAttentionConv2d(nn.Module):
    """ResNeSt split-attention conv (Zhang et al., 2020) as a drop-in for a ``k x k`` conv.

    A ``k x k`` conv (stride s, ``groups = R*C``) makes ``R*c_out`` channels (+BN+ReLU),
    viewed as R splits of ``c_out``; their sum is global-average-pooled and goes through a
    grouped (C) 1x1 FC to ``inter`` channels (no bias: BN follows) + BN + ReLU and a grouped
    (C) 1x1 FC with bias to ``R*c_out``; a softmax across the R splits (sigmoid when R == 1)
    weights the splits, which are summed. As in the paper's code, split r of the grouped conv
    reads the r-th ``c_in / R`` slice of the input channels. A one-image training batch
    normalises the attention BN with its running statistics (batch statistics of one
    pooled vector are undefined).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 radix: int = 2, cardinality: int = 1, reduction: int = 4) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride,
                      radix=radix, cardinality=cardinality, reduction=reduction)
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.radix, self.cardinality, self.reduction = radix, cardinality, reduction
        inter = inter_channels(in_channels, radix, cardinality, reduction)
        self.inter_channels = inter
        self.conv = nn.Conv2d(in_channels, radix * out_channels, kernel_size, stride, padding=kernel_size // 2,
                              groups=radix * cardinality, bias=False)
        self.bn = nn.BatchNorm2d(radix * out_channels)
        self.fc1 = nn.Conv2d(out_channels, inter, 1, groups=cardinality, bias=False)
        self.bn_fc1 = nn.BatchNorm2d(inter)
        self.fc2 = nn.Conv2d(inter, radix * out_channels, 1, groups=cardinality)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, *,
                 radix: int = 2, cardinality: int = 1, reduction: int = 4) -> None:
        check_conv_args("splat", in_channels, out_channels, kernel_size, stride)
        require("splat", _is_count(radix), "radix", "R must be an integer >= 1", radix=radix)
        require("splat", _is_count(cardinality), "cardinality", "C must be an integer >= 1",
                cardinality=cardinality)
        require("splat", _is_count(reduction), "reduction", "must be an integer >= 1", reduction=reduction)
        require("splat", in_channels % (radix * cardinality) == 0, "radix",
                "R*C must divide in_channels (the k x k conv has R*C groups)",
                radix=radix, cardinality=cardinality, in_channels=in_channels)
        require("splat", out_channels % cardinality == 0, "cardinality",
                "C must divide out_channels", cardinality=cardinality, out_channels=out_channels)

    def _bn_fc1(self, z: torch.Tensor) -> torch.Tensor:
        bn = self.bn_fc1
        if self.training and z.shape[0] == 1:
            # batch statistics of a single pooled vector are undefined (zero variance): a
            # one-image training batch normalises with the running statistics, updating nothing
            return F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return bn(z)

    def _attention(self, gap: torch.Tensor) -> torch.Tensor:
        """``(n, c_out, 1, 1)`` pooled sum -> ``(n, R, c_out, 1, 1)`` weights of the splits."""
        n = gap.shape[0]
        logits = self.fc2(F.relu(self._bn_fc1(self.fc1(gap))))  # (n, R*c_out, 1, 1), C groups
        if self.radix == 1:
            return torch.sigmoid(logits).view(n, 1, self.out_channels, 1, 1)
        # fc2's channels are (cardinal group, radix, channel): softmax over radix, then
        # reorder to (radix, cardinal group, channel) to line up with the conv's splits
        logits = logits.view(n, self.cardinality, self.radix, -1).transpose(1, 2)
        return F.softmax(logits, dim=1).reshape(n, self.radix, self.out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv(x)))
        n, _, h, w = y.shape
        splits = y.reshape(n, self.radix, self.out_channels, h, w)
        gap = F.adaptive_avg_pool2d(splits.sum(dim=1), 1)
        return (splits * self._attention(gap)).sum(dim=1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, radix={self.radix}, cardinality={self.cardinality}, "
                f"reduction={self.reduction}")


def _splat_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int,
                radix: int = 2, cardinality: int = 1, reduction: int = 4) -> Cost:
    R, C = radix, cardinality
    inter = inter_channels(c_in, R, C, reduction)
    ho, wo = out_size(h, k, stride), out_size(w, k, stride)
    return (conv_cost(c_in, R * c_out, k, ho, wo, groups=R * C) + bn_cost(R * c_out)
            + conv_cost(c_out, inter, 1, 1, 1, groups=C) + bn_cost(inter)
            + conv_cost(inter, R * c_out, 1, 1, 1, groups=C, bias=True))


register_op(OpSpec(
    "splat", SplitAttentionConv2d, _splat_cost,
    {"radix": Hyper(2, "R: splits per cardinal group, fused by a softmax across radix (sigmoid if 1)"),
     "cardinality": Hyper(1, "C: cardinal groups (groups of the attention FCs; the conv has R*C groups)"),
     "reduction": Hyper(4, "attention bottleneck: inter = max(c_in*R // reduction, 32), rounded to C")},
    "ResNeSt split-attention convolution",
    "Zhang et al., ResNeSt: Split-Attention Networks, 2020",
    examples=({}, {"radix": 1}, {"radix": 2, "cardinality": 2}),
))
