"""Build a PyTorch model from an :class:`ArchSpec`.

The network definitions below, from :func:`make_op` to :func:`build`, are also the network part
of every exported standalone file (:mod:`nasconv.export` copies their source): they may use only
torch and the names that file defines too, ``OPERATORS`` and the architecture constants
(``NUM_CLASSES``, ``IN_CHANNELS``, ``STEM``, ``STEM_WIDTH``, ``STAGES``). Here ``OPERATORS`` is
nasconv's operator registry and the constants describe torchvision's ResNet-50, so ``build()``
is that network. :func:`build_model` builds an architecture through :class:`ArchConvNet`.

Module and parameter names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv2``,
``downsample.0``, ``fc``), so the all-``standard`` ResNet-50 loads torchvision's state dict.

Layer: imports ``arch`` and ``ops`` (the cost of a network is :mod:`nasconv.cost`'s concern).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator

import torch
from torch import nn

from nasconv.arch import ArchSpec
from nasconv.custom import ModelArch
from nasconv.ops import create_op, list_ops


class _Registry:
    """The operator registry as the exported file's ``OPERATORS`` table (name -> class) is called:
    ``OPERATORS[name](in_channels, out_channels, kernel_size, stride, **hyper)`` is
    :func:`~nasconv.ops.create_op`, which completes and checks the hyperparameters (and refuses an
    unknown name, when called, as :func:`build_model` always did)."""

    def __getitem__(self, name: str) -> Callable[..., nn.Module]:
        return functools.partial(create_op, name)

    def __iter__(self) -> Iterator[str]:
        return iter(list_ops())


OPERATORS = _Registry()

NUM_CLASSES = 1000
IN_CHANNELS = 3
STEM = "imagenet"
STEM_WIDTH = 64
STAGES = [
    {"block": "bottleneck", "depth": 3, "width": 64, "stride": 1, "expansion": 4, "op": "standard", "hyper": {}},
    {"block": "bottleneck", "depth": 4, "width": 128, "stride": 2, "expansion": 4, "op": "standard", "hyper": {}},
    {"block": "bottleneck", "depth": 6, "width": 256, "stride": 2, "expansion": 4, "op": "standard", "hyper": {}},
    {"block": "bottleneck", "depth": 3, "width": 512, "stride": 2, "expansion": 4, "op": "standard", "hyper": {}},
]


# --- the network, copied verbatim into every exported file (nasconv.export.source.NETWORK) -----


def make_op(name: str, in_channels: int, out_channels: int, stride: int, hyper: dict) -> nn.Module:
    """A stage's operator, a drop-in for ``nn.Conv2d(in, out, 3, stride, padding=1, bias=False)``."""
    return OPERATORS[name](in_channels, out_channels, 3, stride, **hyper)


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """A 1 x 1 projection (+BN) where the residual changes shape, else None (identity)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions (both are the stage's operator) and a residual connection."""

    def __init__(self, in_channels: int, width: int, stride: int, op: str, hyper: dict) -> None:
        super().__init__()
        self.conv1 = make_op(op, in_channels, width, stride, hyper)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = make_op(op, width, width, 1, hyper)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1 x 1 reduce, 3 x 3 (the stage's operator, carrying the stride as in ResNet v1.5), 1 x 1 expand."""

    def __init__(self, in_channels: int, width: int, stride: int, op: str, hyper: dict, expansion: int = 4) -> None:
        super().__init__()
        out_channels = width * expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = make_op(op, width, width, stride, hyper)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ConvNet(nn.Module):
    """Stem, residual stages ``layer1..layerN``, global average pool, linear classifier.

    Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv2``,
    ``downsample.0``, ``fc``).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, in_channels: int = IN_CHANNELS, *, stem: str = STEM,
                 stem_width: int = STEM_WIDTH, stages: list = STAGES, zero_init_residual: bool = True) -> None:
        super().__init__()
        if stem == "imagenet":  # 7 x 7 / 2 conv, then 3 x 3 / 2 max-pool
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        else:  # "small": 3 x 3 / 2 conv; "cifar": 3 x 3 / 1 conv
            self.conv1 = nn.Conv2d(in_channels, stem_width, 3, 2 if stem == "small" else 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.num_stages = len(stages)
        c = stem_width
        for i, st in enumerate(stages):
            blocks = []
            for j in range(st["depth"]):
                c_in, stride = (c, st["stride"]) if j == 0 else (st["width"] * st["expansion"], 1)
                if st["block"] == "bottleneck":
                    blocks.append(Bottleneck(c_in, st["width"], stride, st["op"], st["hyper"], st["expansion"]))
                else:
                    blocks.append(BasicBlock(c_in, st["width"], stride, st["op"], st["hyper"]))
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c = st["width"] * st["expansion"]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        # The operators initialise their own weights; the backbone's convs get He init.
        for m in [self.conv1] + [m for blk in self.blocks() for m in (
                [blk.conv1, blk.conv3] if isinstance(blk, Bottleneck) else []) + (
                [blk.downsample[0]] if blk.downsample is not None else [])]:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # each block starts as the identity
            for blk in self.blocks():
                nn.init.zeros_((blk.bn3 if isinstance(blk, Bottleneck) else blk.bn2).weight)

    def blocks(self):
        for i in range(self.num_stages):
            yield from getattr(self, f"layer{i + 1}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def build(num_classes: int = NUM_CLASSES, in_channels: int = IN_CHANNELS) -> ConvNet:
    """The network, freshly initialised (for the exported weights: ``load_state_dict``)."""
    return ConvNet(num_classes, in_channels)


# --- nasconv's own ---------------------------------------------------------------------------


class ArchConvNet(ConvNet):
    """:class:`ConvNet` built from an :class:`ArchSpec`, which it keeps as ``arch`` (what export
    and kept weights record)."""

    def __init__(self, arch: ArchSpec, *, num_classes: int | None = None, in_channels: int | None = None,
                 zero_init_residual: bool = True) -> None:
        super().__init__(num_classes or arch.num_classes, in_channels or arch.in_channels, stem=arch.stem,
                         stem_width=arch.stem_width, stages=arch.to_dict()["stages"],
                         zero_init_residual=zero_init_residual)
        self.arch = arch


def build_model(arch: ArchSpec, num_classes: int | None = None, in_channels: int | None = None,
                *, zero_init_residual: bool = True) -> ArchConvNet:
    """Build ``arch`` as an ``nn.Module`` (optionally with another classifier size or input channels)."""
    if isinstance(arch, ModelArch):  # a user's own model with the chosen operators swapped in
        return arch.build(num_classes, in_channels)
    return ArchConvNet(arch, num_classes=num_classes, in_channels=in_channels, zero_init_residual=zero_init_residual)
