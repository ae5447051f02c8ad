"""The weight-sharing supernet of a search space, at the space's proxy (the reduced copy that the
brief training trains, :func:`nasconv.train.reduced_copy`).

Every stage's every operator choice (operator and hyperparameters) has its own weights and its
own batch norms, per block position and per shape it can meet: a choice sees other statistics
than its neighbours, so sharing a BN between choices would mix them. The stem, the shortcuts
(the 1 x 1 projections), a bottleneck's 1 x 1 reduce/expand convolutions and the classifier are
shared by every choice of the same shape. Depth is a choice of how many of a stage's block
positions run (the first ``depth``).

Width multipliers (resnet20) get **per-width weights**: one set per (input width, width) a block
can meet, not Once-for-All's channel slicing. Slicing needs an operator whose narrower version is
a slice of the wider one; grouped, tied, heterogeneous, expert and attention operators are not
(``gc`` G=8 on 24 channels is no slice of G=8 on 32), so slicing would be exact for ``standard``
only. Per-width weights are exact for every operator; they cost memory, which
:func:`~nasconv.supernet.memory.estimate_memory` states before anything is allocated.

:meth:`Supernet.subnet` assembles the network of one architecture as the very
:class:`~nasconv.build.ArchConvNet` that :func:`~nasconv.build.build_model` makes, its modules the
supernet's own (no copy): its ``state_dict()`` loads strictly into a stand-alone network, which
then computes the same outputs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from nasconv.arch import ArchSpec, OpChoice
from nasconv.build import ArchConvNet, Bottleneck, build_model, make_op, shortcut
from nasconv.errors import HyperparameterError, SpaceError
from nasconv.ops import validate_op
from nasconv.spaces import SearchSpace
from nasconv.train import TrainConfig, reduced_copy


def _key(*parts: Any) -> str:
    """A ModuleDict key (no dots): ``c16_w32_gc(groups=2)``."""
    return "_".join(p.label() if isinstance(p, OpChoice) else str(p) for p in parts).replace(".", "p")


@dataclass(frozen=True)
class ProxySettings:
    """What of a :class:`~nasconv.train.TrainConfig` shapes the proxy network."""

    max_depth: int | None
    width_factor: float
    small_stem: bool
    resolution: int
    num_classes: int

    @classmethod
    def of(cls, train: TrainConfig, num_classes: int) -> "ProxySettings":
        return cls(train.max_depth, train.width_factor, train.small_stem, train.resolution, num_classes)


def proxy_arch(arch: ArchSpec, proxy: ProxySettings) -> ArchSpec:
    """The reduced copy the brief training would train (and the supernet runs) for ``arch``."""
    return reduced_copy(arch, max_depth=proxy.max_depth, width_factor=proxy.width_factor,
                        resolution=proxy.resolution, num_classes=proxy.num_classes,
                        in_channels=arch.in_channels, small_stem=proxy.small_stem)


@dataclass(frozen=True)
class BlockVariant:
    """One shape of one block position: input channels, mid width, stride, operator."""

    stage: int
    index: int
    c_in: int
    width: int
    stride: int
    op: OpChoice


def _fits(op: OpChoice, c_in: int, c_out: int, stride: int) -> bool:
    try:
        validate_op(op.name, c_in, c_out, 3, stride, **op.kwargs)
    except HyperparameterError:
        return False
    return True


def _fits_block(block: str, op: OpChoice, c_in: int, width: int, stride: int, expansion: int) -> bool:
    """``op`` fits every convolution it replaces in a block of this shape."""
    if block == "bottleneck":
        return _fits(op, width, width, stride)
    return _fits(op, c_in, width, stride) and _fits(op, width, width, 1)


def enumerate_variants(space: SearchSpace, proxy: ProxySettings) -> tuple[int, list[list[BlockVariant]], set[int]]:
    """The stem width, the block shapes the architectures' proxies can meet (per stage, in a fixed
    order) and the classifier's possible input widths.

    A superset of what :func:`~nasconv.train.reduced_copy` makes: it narrows a stage to
    ``round(width * width_factor)`` where the stage's operator fits the narrower width (and, for
    basic blocks, the next stage's operators fit its narrower input); the full width is kept as a
    variant only where that can fail.
    """
    probe = proxy_arch(space.baseline(), proxy)
    c_ins = {probe.stem_width}
    stages: list[list[BlockVariant]] = []
    for i, st in enumerate(space.stages):
        nxt = space.stages[i + 1] if i + 1 < len(space.stages) else None
        depth = max(st.depths) if proxy.max_depth is None else min(max(st.depths), proxy.max_depth)
        out: list[BlockVariant] = []
        for j in range(depth):
            stride = st.stride if j == 0 else 1
            for c_in_opt, full, op in itertools.product(sorted(c_ins) if j == 0 else [None], st.widths, st.ops):
                narrow = max(1, int(round(full * proxy.width_factor)))
                widths = [narrow]
                if narrow != full:
                    c_probe = c_in_opt if c_in_opt is not None else narrow * st.expansion
                    next_fails = st.block == "basic" and nxt is not None and not all(
                        _fits(o, narrow, w2, nxt.stride) for o in nxt.ops for w2 in nxt.widths)
                    if next_fails or not _fits_block(st.block, op, c_probe, narrow, stride, st.expansion):
                        widths.append(full)
                for w in widths:
                    c = c_in_opt if c_in_opt is not None else w * st.expansion
                    if _fits_block(st.block, op, c, w, stride, st.expansion):
                        out.append(BlockVariant(i, j, c, w, stride, op))
        if not out:
            raise SpaceError(f"stage {i} of space {space.name!r} has no operator that fits its proxy widths")
        stages.append(out)
        c_ins = {v.width * st.expansion for v in out}
    return probe.stem_width, stages, c_ins


class _OpPart(nn.Module):
    """A choice's own modules in one block: the operator convolution(s) and the BNs after them."""

    def __init__(self, block: str, v: BlockVariant, expansion: int) -> None:
        super().__init__()
        if block == "basic":
            self.conv1 = make_op(v.op.name, v.c_in, v.width, v.stride, v.op.kwargs)
            self.bn1 = nn.BatchNorm2d(v.width)
            self.conv2 = make_op(v.op.name, v.width, v.width, 1, v.op.kwargs)
            self.bn2 = nn.BatchNorm2d(v.width)
        else:  # the bottleneck's 3 x 3 and the BN after it; bn3 too (its input depends on the choice)
            self.conv2 = make_op(v.op.name, v.width, v.width, v.stride, v.op.kwargs)
            self.bn2 = nn.BatchNorm2d(v.width)
            self.bn3 = nn.BatchNorm2d(v.width * expansion)


class _Shared(nn.Module):
    """A bottleneck's 1 x 1 reduce (+BN) and expand for one (input width, width)."""

    def __init__(self, c_in: int, width: int, expansion: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * expansion, 1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        nn.init.kaiming_normal_(self.conv3.weight, mode="fan_out", nonlinearity="relu")


class Supernet(nn.Module):
    """Weights of every architecture of ``space`` at the proxy ``proxy``; :meth:`subnet` picks one."""

    def __init__(self, space: SearchSpace, proxy: ProxySettings, *, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(space, SearchSpace):  # a user's own model (``kind: model``)
            raise SpaceError(f"one-shot screening covers nasconv's residual backbones; space "
                             f"{getattr(space, 'name', space)!r} is a user's own model "
                             f"(kind: {getattr(space, 'kind', '?')}), which the supernet does not cover")
        self.space, self.proxy = space, proxy
        torch.manual_seed(seed)
        stem_width, variants, head_widths = enumerate_variants(space, proxy)
        self.conv1, self.bn1, self.maxpool = _stem(proxy_arch(space.baseline(), proxy))  # shared
        self.ops = nn.ModuleDict()  # per block position and shape: the choice's own modules
        self.shared = nn.ModuleDict()  # bottleneck 1 x 1s, per block position and (c_in, width)
        self.shortcuts = nn.ModuleDict()  # projections, per block position and (c_in, c_out)
        # each choice's block starts as the identity (its last BN scale 0), as in build.ConvNet
        for st_vars in variants:
            for v in st_vars:
                st = space.stages[v.stage]
                if self.op_key(v) not in self.ops:
                    part = _OpPart(st.block, v, st.expansion)
                    nn.init.zeros_((part.bn3 if st.block == "bottleneck" else part.bn2).weight)
                    self.ops[self.op_key(v)] = part
                if st.block == "bottleneck" and self.shared_key(v) not in self.shared:
                    self.shared[self.shared_key(v)] = _Shared(v.c_in, v.width, st.expansion)
                proj = shortcut(v.c_in, v.width * st.expansion, v.stride)
                if proj is not None and self.shortcut_key(v) not in self.shortcuts:
                    nn.init.kaiming_normal_(proj[0].weight, mode="fan_out", nonlinearity="relu")
                    self.shortcuts[self.shortcut_key(v)] = proj
        self.heads = nn.ModuleDict({f"c{c}": nn.Linear(c, proxy.num_classes) for c in sorted(head_widths)})
        self.variants = variants

    def op_key(self, v: BlockVariant) -> str:
        """A bottleneck's operator sees the block's mid width only, not its input width."""
        c_in = "" if self.space.stages[v.stage].block == "bottleneck" else f"c{v.c_in}"
        return _key(f"s{v.stage}", f"b{v.index}", c_in, f"w{v.width}", v.op)

    @staticmethod
    def shared_key(v: BlockVariant) -> str:
        return _key(f"s{v.stage}", f"b{v.index}", f"c{v.c_in}", f"w{v.width}")

    @staticmethod
    def shortcut_key(v: BlockVariant) -> str:
        return _key(f"s{v.stage}", f"b{v.index}", f"c{v.c_in}", f"o{v.width}")

    def block_variants(self, arch: ArchSpec) -> Iterator[BlockVariant]:
        """The block shapes of ``arch``'s proxy, in order."""
        p = proxy_arch(arch, self.proxy)
        c = p.stem_width
        for i, st in enumerate(p.stages):
            for j in range(st.depth):
                yield BlockVariant(i, j, c, st.width, st.stride if j == 0 else 1, st.op)
                c = st.width * st.expansion

    def check_arch(self, arch: ArchSpec) -> None:
        """One line when ``arch`` is not of this supernet's space or needs a shape it lacks."""
        self.space.check_arch(arch)
        for v in self.block_variants(arch):
            if self.op_key(v) not in self.ops:
                raise SpaceError(f"the supernet of {self.space.name!r} has no weights for stage {v.stage} block "
                                 f"{v.index} as {v.op.label()} on {v.c_in}->{v.width} channels")

    def subnet(self, arch: ArchSpec) -> ArchConvNet:
        """``arch``'s proxy network, made of this supernet's modules (training it trains them)."""
        self.check_arch(arch)
        p = proxy_arch(arch, self.proxy)
        with torch.device("meta"):  # the skeleton only: every module with weights is replaced
            net = build_model(p, num_classes=self.proxy.num_classes)
        net.conv1, net.bn1, net.maxpool = self.conv1, self.bn1, self.maxpool
        blocks = list(net.blocks())
        for blk, v in zip(blocks, self.block_variants(arch), strict=True):
            part = self.ops[self.op_key(v)]
            if isinstance(blk, Bottleneck):
                shared = self.shared[self.shared_key(v)]
                blk.conv1, blk.bn1, blk.conv3 = shared.conv1, shared.bn1, shared.conv3
                blk.conv2, blk.bn2, blk.bn3 = part.conv2, part.bn2, part.bn3
            else:
                blk.conv1, blk.bn1, blk.conv2, blk.bn2 = part.conv1, part.bn1, part.conv2, part.bn2
            if blk.downsample is not None:
                blk.downsample = self.shortcuts[self.shortcut_key(v)]
        net.fc = self.heads[f"c{net.fc.in_features}"]
        net.train(self.training)
        return net


def _stem(arch: ArchSpec) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The stem of :class:`~nasconv.build.ConvNet` (its code's initialisation too)."""
    if arch.stem == "imagenet":
        conv, pool = nn.Conv2d(arch.in_channels, arch.stem_width, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)
    else:
        stride = 2 if arch.stem == "small" else 1
        conv, pool = nn.Conv2d(arch.in_channels, arch.stem_width, 3, stride, 1, bias=False), nn.Identity()
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv, nn.BatchNorm2d(arch.stem_width), pool


def load_weights(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``net.load_state_dict(state)`` (strict) in one pass: torch's filters the whole dict per
    module, quadratic in a supernet's thousands of modules (minutes where this takes a second)."""
    own = net.state_dict(keep_vars=True)
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise SpaceError(f"the checkpoint's weights do not fit this supernet ({len(missing)} missing, e.g. "
                         f"{(missing or ['-'])[0]}; {len(extra)} unexpected, e.g. {(extra or ['-'])[0]})")
    with torch.no_grad():
        for k, t in own.items():
            if t.shape != state[k].shape:
                raise SpaceError(f"the checkpoint's {k} has shape {tuple(state[k].shape)}, the supernet's "
                                 f"{tuple(t.shape)}")
            t.copy_(state[k])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
