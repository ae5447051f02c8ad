"""Tied Block Convolution (TBC) and Tied Block Group Convolution (TGC).

Wang & Yu, "Tied Block Convolution: Leaner and Better CNNs with Shared Thinner Filters",
AAAI 2021. The input channels are split into ``B`` equal blocks that all go through ONE
shared, thinner filter bank, so parameters drop by ``B**2`` and MACs by ``B``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasconv.ops._registry import Hyper, OpSpec, check_conv_args, register_op, require
from nasconv.ops.complexity import Cost, conv_cost, out_size


def _validate_tied(op: str, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                   blocks: int, groups: int) -> None:
    check_conv_args(op, in_channels, out_channels, kernel_size, stride)
    require(op, isinstance(blocks, int) and not isinstance(blocks, bool) and blocks >= 1, "blocks",
            "B must be an integer >= 1", blocks=blocks)
    require(op, in_channels % blocks == 0 and out_channels % blocks == 0, "blocks",
            "B must divide in_channels and out_channels",
            blocks=blocks, in_channels=in_channels, out_channels=out_channels)
    if op == "tbc":
        return
    require(op, isinstance(groups, int) and not isinstance(groups, bool) and groups >= 1, "groups",
            "G must be an integer >= 1", groups=groups)
    require(op, in_channels % (blocks * groups) == 0 and out_channels % (blocks * groups) == 0, "groups",
            "B*G must divide in_channels and out_channels",
            blocks=blocks, groups=groups, in_channels=in_channels, out_channels=out_channels)


class _TiedConv2d(nn.Module):
    """Shared machinery: one conv call serves all B blocks, in one of two exact forms.

    * batch fold (the paper's form): the blocks become B times the batch, convolved with the
      thin shared filter. Used in training and wherever it is the faster form.
    * tiled: a ``B*G``-group convolution whose weight is the shared filter repeated B times,
      i.e. the group conv of the same MACs. On the CPU the fold is up to ~1.3x slower than
      that group conv on large maps for a single image, and for any batch when a block has
      fewer than 16 channels (thin blocks are a poor shape for oneDNN; measured in
      benchmarks/ops_latency.py), so inference runs tiled there: maps of at least
      ``TILED_MIN_PIXELS`` pixels, and one image or blocks thinner than ``TILED_MAX_BLOCK``
      channels. The tiled weight is built once and reused until the parameter changes (its
      version counter, storage, dtype or device), so this form costs what the group conv costs.
      In-place writes through ``weight.data`` bypass the version counter: call
      ``.train()``/``.eval()`` (which drop the cache) after them.
    """

    #: inference runs tiled on maps of at least this many pixels, for one image or blocks of
    #: fewer than TILED_MAX_BLOCK input channels (see above)
    TILED_MIN_PIXELS = 28 * 28
    TILED_MAX_BLOCK = 16

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 blocks: int, groups: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.blocks = blocks
        self.groups = groups
        self.weight = nn.Parameter(
            torch.empty(out_channels // blocks, in_channels // (blocks * groups), kernel_size, kernel_size))
        # Same init as nn.Conv2d (kaiming_uniform, a=sqrt(5)) so swapping ops keeps the start scale.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if self._runs_tiled(n, h, w):
            return F.conv2d(x, self._tiled_weight(), None, self.stride, self.kernel_size // 2, 1,
                            self.blocks * self.groups)
        # Explicit sizes (not -1) so a wrong channel count fails here instead of silently
        # turning into a bigger batch.
        y = F.conv2d(x.reshape(n * self.blocks, self.in_channels // self.blocks, h, w), self.weight,
                     None, self.stride, self.kernel_size // 2, 1, self.groups)
        return y.reshape(n, self.out_channels, y.shape[-2], y.shape[-1])

    def _runs_tiled(self, n: int, h: int, w: int) -> bool:
        """Inference (no autograd, not traced or compiled) where the tiled form is the faster one."""
        return (self.blocks > 1 and h * w >= self.TILED_MIN_PIXELS
                and (n == 1 or self.in_channels // self.blocks < self.TILED_MAX_BLOCK)
                and not self.training and not torch.is_grad_enabled()
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling())

    def _tiled_weight(self) -> torch.Tensor:
        wt = self.weight
        key = (wt._version, wt.data_ptr(), wt.dtype, wt.device)
        cached = self.__dict__.get("_tiled")
        if cached is None or cached[0] != key:
            cached = (key, wt.detach().repeat(self.blocks, 1, 1, 1))
            self.__dict__["_tiled"] = cached
        return cached[1]

    def train(self, mode: bool = True) -> "_TiedConv2d":
        self.__dict__.pop("_tiled", None)
        return super().train(mode)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()  # a copy: object.__getstate__ hands back the live dict
        state.pop("_tiled", None)
        return state

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, blocks={self.blocks}")
        return s + (f", groups={self.groups}" if self.groups != 1 else "")


class TiedBlockConv2d(_TiedConv2d):
    """TBC (Wang & Yu, AAAI 2021): ``blocks`` B channel blocks share one (c_out/B, c_in/B, k, k) filter."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 blocks: int = 2) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, blocks=blocks)
        super().__init__(in_channels, out_channels, kernel_size, stride, blocks, 1)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, blocks: int) -> None:
        _validate_tied("tbc", in_channels, out_channels, kernel_size, stride, blocks, 1)


class TiedBlockGroupConv2d(_TiedConv2d):
    """TGC (Wang & Yu, AAAI 2021): TBC whose shared filter is a ``groups``-group conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 blocks: int = 2, groups: int = 2) -> None:
        self.validate(in_channels, out_channels, kernel_size, stride, blocks=blocks, groups=groups)
        super().__init__(in_channels, out_channels, kernel_size, stride, blocks, groups)

    @staticmethod
    def validate(in_channels: int, out_channels: int, kernel_size: int, stride: int, blocks: int,
                 groups: int) -> None:
        _validate_tied("tgc", in_channels, out_channels, kernel_size, stride, blocks, groups)


def _tied_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, blocks: int, groups: int) -> Cost:
    # The shared filter is stored once but applied to each of the B blocks.
    one = conv_cost(c_in // blocks, c_out // blocks, k, out_size(h, k, stride), out_size(w, k, stride),
                    groups=groups)
    return Cost(one.params, one.macs * blocks)


def _tbc_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, blocks: int) -> Cost:
    return _tied_cost(c_in, c_out, k, h, w, stride, blocks, 1)


def _tgc_cost(c_in: int, c_out: int, k: int, h: int, w: int, stride: int, blocks: int, groups: int) -> Cost:
    return _tied_cost(c_in, c_out, k, h, w, stride, blocks, groups)


_PAPER = "Wang & Yu, Tied Block Convolution, AAAI 2021"

register_op(OpSpec(
    "tbc", TiedBlockConv2d, _tbc_cost,
    {"blocks": Hyper(2, "B: channel blocks sharing one (c_out/B, c_in/B, k, k) filter; params / B^2, MACs / B")},
    "tied block convolution", _PAPER,
    examples=({"blocks": 1}, {"blocks": 2}, {"blocks": 4}, {"blocks": 8}),
))
register_op(OpSpec(
    "tgc", TiedBlockGroupConv2d, _tgc_cost,
    {"blocks": Hyper(2, "B: channel blocks sharing one filter bank"),
     "groups": Hyper(2, "G: groups of the shared filter; B*G must divide the channels")},
    "tied block group convolution", _PAPER,
    examples=({"blocks": 1, "groups": 1}, {"blocks": 2, "groups": 2}, {"blocks": 4, "groups": 2},
              {"blocks": 2, "groups": 4}),
))
