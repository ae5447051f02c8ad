"""The parts of a ``kind: model`` space (a user's own network, :mod:`nasconv.custom`): each searched
convolution (slot) at each of its call shapes under each operator choice of its stage, and the
rest of the network as one part.

The rest is the user's model with every searched slot replaced by a stand-in that returns zeros
of the slot's output shape (a memset, far below any convolution's cost), timed directly on the
model's input: the fixed convolutions (the first one, pointwise and depthwise ones, slots in no
stage), normalisation, activations, pooling, concatenations and the classifier, at the shapes the
candidate runs them. The alternative, the whole base network minus its timed base convolutions,
is a small difference of two large noisy numbers where convolutions are most of the time (VGG-16:
nearly all of it): it can come out negative, and it carries both timings' noise. A candidate's
latency is then the rest plus its slots' parts, mapped to whole-network latency by the space's
calibration, as for nasconv's own networks (:mod:`nasconv.latency.model`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn

from nasconv.arch import OpChoice
from nasconv.custom import ModelSpace, Slot
from nasconv.custom.build import BiasedOp, fresh_model, replace_slot
from nasconv.custom.cost import profile
from nasconv.ops import create_op
from nasconv.ops.complexity import out_size

KIND = "model"


def is_model_space(space: Any) -> bool:
    return getattr(space, "kind", None) == KIND


def _searched(space: ModelSpace) -> list[str]:
    return [n for st in space.stages for n in st.slots]


def _calls(space: ModelSpace, resolution: int) -> dict[str, tuple[tuple[int, int], ...]]:
    if resolution == space.resolution:
        return {s.name: s.calls for s in space.slots}
    return dict(profile(space, resolution).calls)


def rest_part(space: ModelSpace, resolution: int | None = None) -> Any:
    from nasconv.latency.blocks import Part

    res = resolution or space.resolution
    what = {"factory": space.factory, "kwargs": space.kwargs, "fingerprint": space.fingerprint,
            "input": list(space.input_shape), "searched": sorted(_searched(space))}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return Part("rest", f"rest:{digest}:{space.in_channels}@{res}", space.in_channels, res, (space, res))


def conv_part(slot: Slot, op: OpChoice, call: tuple[int, int]) -> Any:
    from nasconv.latency.blocks import Part

    h, w = call
    c_in, c_out, k, s = slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride
    key = f"conv:{op.label()}:{c_in}>{c_out}/k{k}s{s}{'+b' if slot.bias else ''}@{h}x{w}"
    return Part("conv", key, c_in, max(h, w), (op, c_in, c_out, k, s, slot.bias, h, w))


def model_arch_parts(arch: Any, resolution: int | None = None) -> list[Any]:
    """The rest, then each searched slot's part at each of its calls (a reused module once per call)."""
    space = arch.model_space
    calls = _calls(space, resolution or space.resolution)
    slots = space.slot_by_name
    parts = [rest_part(space, resolution)]
    for st, op in zip(space.stages, arch.ops):
        for name in st.slots:
            parts += [conv_part(slots[name], op, c) for c in calls[name]]
    return parts


def model_space_parts(space: ModelSpace) -> list[Any]:
    """Every distinct part of the space's candidates: the rest and each (slot shape, call, choice)."""
    out = {}
    rest = rest_part(space)
    out[rest.key] = rest
    slots = space.slot_by_name
    for st in space.stages:
        for op in st.ops:
            for name in st.slots:
                for c in slots[name].calls:
                    p = conv_part(slots[name], op, c)
                    out.setdefault(p.key, p)
    return list(out.values())


class _Crop(nn.Module):
    """A slot called on a non-square map, timed on the ``h x w`` corner of a square input."""

    def __init__(self, module: nn.Module, h: int, w: int) -> None:
        super().__init__()
        self.module, self.h, self.w = module, h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x[..., :self.h, :self.w])


class _StandIn(nn.Module):
    """Zeros of a slot's output shape: the rest of the network runs as it does around the slot."""

    def __init__(self, slot: Slot) -> None:
        super().__init__()
        self.out_channels, self.kernel_size, self.stride = slot.out_channels, slot.kernel_size, slot.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        return x.new_zeros(x.shape[0], self.out_channels, out_size(x.shape[2], k, s), out_size(x.shape[3], k, s))


def build_model_part(part: Any) -> nn.Module:
    if part.kind == "rest":
        space, _ = part.spec
        torch.manual_seed(0)
        model = fresh_model(space)
        slots = space.slot_by_name
        for name in _searched(space):
            replace_slot(model, slots[name], _StandIn(slots[name]))
        return model
    op, c_in, c_out, k, s, bias, h, w = part.spec
    if op.name == "standard":
        module: nn.Module = nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2, bias=bias)
    else:
        module = create_op(op.name, c_in, c_out, k, s, **op.kwargs)
        if bias:
            module = BiasedOp(module, torch.zeros(c_out))
    return module if h == w else _Crop(module, h, w)
