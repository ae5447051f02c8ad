"""The parts a network's latency is the sum of: its stem, each residual block (operator choice x
shape x stride) and its head, each named by a key that a lookup table stores. A network repeats
few distinct blocks, and a space produces a few hundred: these are what a device is profiled on.
A ``kind: model`` space (a user's own network) has other parts: :mod:`.model_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from nasconv.arch import ArchSpec, OpChoice
from nasconv.build import BasicBlock, Bottleneck, ConvNet
from nasconv.cost import block_out_size, stem_size
from nasconv.latency.model_parts import build_model_part, is_model_space, model_arch_parts, model_space_parts
from nasconv.spaces import SearchSpace


@dataclass(frozen=True)
class Part:
    """One stem, block or head with its input shape; ``key`` names it in the lookup table."""

    kind: str  # "stem", "block" or "head"; a model space's "rest" and "conv" (.model_parts)
    key: str
    in_channels: int
    size: int  # input side in pixels (inputs are square)
    #: what builds it: stem (type, in, width); block (block, c_in, width, stride, expansion, op); head (c, classes)
    spec: tuple


def stem_part(stem: str, in_channels: int, width: int, resolution: int) -> Part:
    return Part("stem", f"stem:{stem}:{in_channels}>{width}@{resolution}", in_channels, resolution,
                (stem, in_channels, width))


def block_part(block: str, c_in: int, width: int, stride: int, expansion: int, op: OpChoice, size: int) -> Part:
    key = f"{block}:{op.label()}:{c_in}>{width}x{expansion}/s{stride}@{size}"
    return Part("block", key, c_in, size, (block, c_in, width, stride, expansion, op))


def head_part(channels: int, num_classes: int, size: int) -> Part:
    return Part("head", f"head:{channels}>{num_classes}@{size}", channels, size, (channels, num_classes))


def arch_parts(arch: ArchSpec, resolution: int | None = None) -> list[Part]:
    """Every part of ``arch`` in forward order, one entry per block (repeats included)."""
    if is_model_space(arch):  # a user's own network: its slots and the rest (.model_parts)
        return model_arch_parts(arch, resolution)
    res = resolution or arch.resolution
    parts = [stem_part(arch.stem, arch.in_channels, arch.stem_width, res)]
    h = stem_size(arch.stem, res, res)[0]
    c = arch.stem_width
    for st in arch.stages:
        parts.append(block_part(st.block, c, st.width, st.stride, st.expansion, st.op, h))
        h = block_out_size(h, st.stride)
        c = st.out_channels
        if st.depth > 1:
            rest = block_part(st.block, c, st.width, 1, st.expansion, st.op, h)
            parts.extend([rest] * (st.depth - 1))
    parts.append(head_part(c, arch.num_classes, h))
    return parts


def arch_key_counts(arch: ArchSpec, resolution: int | None = None) -> dict[str, int]:
    """Part key -> how many times ``arch`` runs it."""
    counts: dict[str, int] = {}
    for p in arch_parts(arch, resolution):
        counts[p.key] = counts.get(p.key, 0) + 1
    return counts


def space_parts(space: SearchSpace) -> list[Part]:
    """Every distinct part any architecture of ``space`` can contain, in a stable order."""
    if is_model_space(space):
        return model_space_parts(space)  # type: ignore[arg-type]
    res = space.resolution
    out: dict[str, Part] = {}

    def add(p: Part) -> None:
        out.setdefault(p.key, p)

    add(stem_part(space.stem, space.in_channels, space.stem_width, res))
    h = stem_size(space.stem, res, res)[0]
    inputs = {space.stem_width}
    for st in space.stages:
        h2 = block_out_size(h, st.stride)
        for op in st.ops:
            for w in st.widths:
                for c in sorted(inputs):
                    add(block_part(st.block, c, w, st.stride, st.expansion, op, h))
                if max(st.depths) > 1:
                    add(block_part(st.block, w * st.expansion, w, 1, st.expansion, op, h2))
        inputs = {w * st.expansion for w in st.widths}
        h = h2
    for c in sorted(inputs):
        add(head_part(c, space.num_classes, h))
    return list(out.values())


class _Stem(nn.Module):
    def __init__(self, stem: str, in_channels: int, width: int) -> None:
        super().__init__()
        net = ConvNet(1, in_channels, stem=stem, stem_width=width, stages=[])
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool

    def forward(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class _Head(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.avgpool(x).flatten(1))


def build_part(part: Part) -> nn.Module:
    """The module a part stands for, built as :func:`nasconv.build.build_model` builds it."""
    if part.kind in ("rest", "conv"):
        return build_model_part(part)
    if part.kind == "stem":
        return _Stem(*part.spec)
    if part.kind == "head":
        return _Head(*part.spec)
    block, c_in, width, stride, expansion, op = part.spec
    if block == "bottleneck":
        return Bottleneck(c_in, width, stride, op.name, op.kwargs, expansion)
    return BasicBlock(c_in, width, stride, op.name, op.kwargs)
