"""Plain convolution and group convolution (the references every other operator is measured against)."""

from __future__ import annotations

from torch import nn

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, conv_cost, out_size


class StandardConv2d(nn.Conv2d):
    """``nn.Conv2d(in, out, k, stride, padding=k//2, bias=False)``.

    A subclass, not a wrapper, so that a network built from it has torchvision's
    parameter names (``conv2.weight``) and loads its state dicts.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        check_conv_args("standard", in_channels, out_channels, kernel_size, stride)


class GroupConv2d(nn.Conv2d):
    """Group convolution with ``groups`` G: G independent convs over c_in/G channels each."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 2) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, groups)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
                         groups=groups, bias=False)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int) -> None:
        check_conv_args("gc", in_channels, out_channels, kernel_size, stride)
        require("gc", isinstance(groups, int) and groups >= 1, "groups", "G must be an integer >= 1", groups=groups)
        require("gc", in_channels % groups == 0 and out_channels % groups == 0, "groups",
                "G must divide in_channels and out_channels",
                groups=groups, in_channels=in_channels, out_channels=out_channels)


def _standard_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int) -> Cost:
    return conv_cost(c_in, c_out, k, out_size(h, k, stride), out_size(w, k, stride))


def _gc_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, groups: int) -> Cost:
    return conv_cost(c_in, c_out, k, out_size(h, k, stride), out_size(w, k, stride), groups=groups)


register_op(OpSpec("standard", StandardConv2d, _standard_cost, {}, "plain k x k convolution", examples=({},)))
register_op(OpSpec(
    "gc", GroupConv2d, _gc_cost,
    {"groups": Hyper(2, "G: number of groups; each output channel sees c_in/G input channels")},
    "group convolution", "Krizhevsky et al., 2012; Xie et al. (ResNeXt), CVPR 2017",
    examples=({"groups": 1}, {"groups": 2}, {"groups": 4}, {"groups": 8}),
))
