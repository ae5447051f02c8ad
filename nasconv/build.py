"""Build a PyTorch model from an :class:`ArchSpec`; each block carries its analytic cost.

Module and parameter names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv2``,
``downsample.0``, ``fc``), so the all-``standard`` ResNet-50 loads torchvision's state dict.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from nasconv.arch import ArchSpec, OpChoice, StageSpec
from nasconv.ops import create_op, op_cost
from nasconv.ops._registry import Cost, bn_cost, conv_cost, linear_cost, out_size


def _op(choice: OpChoice, c_in: int, c_out: int, stride: int) -> nn.Module:
    return create_op(choice.name, c_in, c_out, 3, stride, **choice.kwargs)


def _op_cost(choice: OpChoice, c_in: int, c_out: int, h: int, w: int, stride: int) -> Cost:
    return op_cost(choice.name, c_in, c_out, 3, h, w, stride, **choice.kwargs)


def _shortcut_cost(c_in: int, c_out: int, stride: int, h: int, w: int) -> Cost:
    if stride == 1 and c_in == c_out:
        return Cost()
    return conv_cost(c_in, c_out, 1, out_size(h, 1, stride), out_size(w, 1, stride)) + bn_cost(c_out)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions (both are the stage's operator) and a residual connection."""

    def __init__(self, c_in: int, width: int, stride: int, op: OpChoice) -> None:
        super().__init__()
        self.conv1 = _op(op, c_in, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _op(op, width, width, 1)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, width, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:  # a property, not a second registration of bn2
        return self.bn2

    @staticmethod
    def complexity(c_in: int, width: int, stride: int, op: OpChoice, h: int, w: int) -> tuple[Cost, int, int]:
        h2, w2 = out_size(h, 3, stride), out_size(w, 3, stride)
        cost = (_op_cost(op, c_in, width, h, w, stride) + bn_cost(width)
                + _op_cost(op, width, width, h2, w2, 1) + bn_cost(width)
                + _shortcut_cost(c_in, width, stride, h, w))
        return cost, h2, w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1 x 1 reduce, 3 x 3 (the stage's operator, carrying the stride as in ResNet v1.5), 1 x 1 expand."""

    def __init__(self, c_in: int, width: int, stride: int, op: OpChoice, expansion: int = 4) -> None:
        super().__init__()
        c_out = width * expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _op(op, width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    @staticmethod
    def complexity(c_in: int, width: int, stride: int, op: OpChoice, h: int, w: int,
                   expansion: int = 4) -> tuple[Cost, int, int]:
        c_out = width * expansion
        h2, w2 = out_size(h, 3, stride), out_size(w, 3, stride)
        cost = (conv_cost(c_in, width, 1, h, w) + bn_cost(width)
                + _op_cost(op, width, width, h, w, stride) + bn_cost(width)
                + conv_cost(width, c_out, 1, h2, w2) + bn_cost(c_out)
                + _shortcut_cost(c_in, c_out, stride, h, w))
        return cost, h2, w2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _blocks(stage: StageSpec, c_in: int) -> Iterator[tuple[int, int]]:
    """(in_channels, stride) of each block of a stage."""
    for i in range(stage.depth):
        yield (c_in if i == 0 else stage.out_channels), (stage.stride if i == 0 else 1)


def _stem_size(stem: str, h: int, w: int) -> tuple[int, int]:
    if stem == "imagenet":  # 7x7/2 conv, then 3x3/2 max-pool with padding 1
        h, w = out_size(h, 7, 2), out_size(w, 7, 2)
        return out_size(h, 3, 2), out_size(w, 3, 2)
    if stem == "small":  # 3x3/2 conv
        return out_size(h, 3, 2), out_size(w, 3, 2)
    return h, w


def stem_cost(stem: str, c_in: int, width: int, res: int) -> Cost:
    k, s = STEM_CONV[stem]
    h = out_size(res, k, s)
    return conv_cost(c_in, width, k, h, h) + bn_cost(width)


#: stem type -> (kernel, stride) of its convolution
STEM_CONV = {"imagenet": (7, 2), "small": (3, 2), "cifar": (3, 1)}


class ConvNet(nn.Module):
    """Stem, residual stages ``layer1..layerN``, global average pool, linear classifier."""

    def __init__(self, arch: ArchSpec, *, num_classes: int | None = None, in_channels: int | None = None,
                 zero_init_residual: bool = True) -> None:
        super().__init__()
        self.arch = arch
        num_classes = num_classes or arch.num_classes
        in_channels = in_channels or arch.in_channels
        if arch.stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, arch.stem_width, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        elif arch.stem == "small":
            self.conv1 = nn.Conv2d(in_channels, arch.stem_width, 3, 2, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, arch.stem_width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(arch.stem_width)
        self.relu = nn.ReLU(inplace=True)
        c = arch.stem_width
        for i, stage in enumerate(arch.stages):
            blocks = []
            for c_block, stride in _blocks(stage, c):
                if stage.block == "bottleneck":
                    blocks.append(Bottleneck(c_block, stage.width, stride, stage.op, stage.expansion))
                else:
                    blocks.append(BasicBlock(c_block, stage.width, stride, stage.op))
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c = stage.out_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self._init(zero_init_residual)

    def _init(self, zero_init_residual: bool) -> None:
        # Only the backbone's own layers: operators initialise their internals themselves
        # (DO-Conv's identity-like D, dynamic kernels' experts...).
        own_convs = [self.conv1] + [m for blk in self.blocks() for m in (
            [blk.conv1, blk.conv3] if isinstance(blk, Bottleneck) else []) + (
            [blk.downsample[0]] if blk.downsample is not None else [])]
        for m in own_convs:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # each block starts as identity: brief training converges faster
            for blk in self.blocks():
                nn.init.zeros_(blk.last_bn.weight)

    def blocks(self) -> Iterator[nn.Module]:
        for i in range(len(self.arch.stages)):
            yield from getattr(self, f"layer{i + 1}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(len(self.arch.stages)):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def build_model(arch: ArchSpec, num_classes: int | None = None, in_channels: int | None = None,
                *, zero_init_residual: bool = True) -> ConvNet:
    """Build ``arch`` as an ``nn.Module`` (optionally with another classifier size or input channels)."""
    return ConvNet(arch, num_classes=num_classes, in_channels=in_channels, zero_init_residual=zero_init_residual)


def network_cost(arch: ArchSpec, resolution: int | None = None, *, num_classes: int | None = None,
                 in_channels: int | None = None) -> tuple[Cost, list[tuple[str, Cost]]]:
    """Analytic cost of the whole network and its parts (stem, layer1.., head)."""
    res = resolution or arch.resolution
    c_in = in_channels or arch.in_channels
    parts = [("stem", stem_cost(arch.stem, c_in, arch.stem_width, res))]
    h, w = _stem_size(arch.stem, res, res)
    c = arch.stem_width
    for i, stage in enumerate(arch.stages):
        total = Cost()
        for c_block, stride in _blocks(stage, c):
            if stage.block == "bottleneck":
                cost, h, w = Bottleneck.complexity(c_block, stage.width, stride, stage.op, h, w, stage.expansion)
            else:
                cost, h, w = BasicBlock.complexity(c_block, stage.width, stride, stage.op, h, w)
            total = total + cost
        parts.append((f"layer{i + 1}", total))
        c = stage.out_channels
    parts.append(("head", linear_cost(c, num_classes or arch.num_classes)))
    return sum((p for _, p in parts), Cost()), parts
