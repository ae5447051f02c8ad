"""Exact cost of a model-space candidate: the replaced convolutions analytically
(:func:`nasconv.ops.op_cost`, per call), the rest of the network measured once per space and
input size with ``FlopCounterMode``. Equal to ``FlopCounterMode`` on every built candidate."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from nasconv.arch import OpChoice
from nasconv.cost import NetworkCost
from nasconv.custom.build import check_io
from nasconv.custom.classes import for_classes
from nasconv.custom.errors import ModelError
from nasconv.custom.factory import call_factory, space_factory
from nasconv.custom.space import ModelSpace, Slot
from nasconv.custom.trace import ConvInfo, trace_model
from nasconv.ops import op_cost
from nasconv.ops.complexity import Cost, conv_cost, out_size


@dataclass(frozen=True)
class Profile:
    """What one run of the unmodified model at one input size tells the cost model."""

    #: everything but the searched slots: measured total minus their own convolutions
    rest: Cost
    #: searched slot -> input (height, width) of each call at this input size
    calls: dict[str, tuple[tuple[int, int], ...]]

    def __hash__(self) -> int:  # pragma: no cover - not used as a key
        return id(self)


def _as_slot(c: ConvInfo) -> Slot:
    return Slot(c.name, c.in_channels, c.out_channels, c.kernel_size, c.stride, c.bias, c.calls, c.aliases)


def changes(space: ModelSpace, convs: tuple[ConvInfo, ...]) -> list[str]:
    """What differs between the space's slots and fixed convolutions and a fresh trace's."""
    now = {c.name: c for c in convs}
    out = []
    for s in space.slots:
        c = now.get(s.name)
        if c is None:
            out.append(f"{s.name} is gone")
        elif not c.replaceable:
            out.append(f"{s.name} is now fixed ({c.reason})")
        elif _as_slot(c) != s:
            out.append(f"{s.name} was {s.describe()}, is now {_as_slot(c).describe()}")
    known = {s.name for s in space.slots} | {n for n, _ in space.fixed}
    out += [f"{c.name} is new" for c in convs if c.name not in known]
    return out


@functools.lru_cache(maxsize=64)
def profile(space: ModelSpace, resolution: int) -> Profile:
    """Run the space's model once at ``resolution`` (square) and split its measured cost."""
    factory = space_factory(space)
    model = call_factory(factory, space.kwargs, space.factory)
    c = space.in_channels
    tr = trace_model(model, (c, resolution, resolution), include_first=space.include_first)
    by_name = {t.name: t for t in tr.convs}
    if resolution == space.resolution:
        diff = changes(space, tr.convs)
        if diff or tr.fingerprint != space.fingerprint:
            what = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "") if diff else \
                "module names or parameter shapes outside the convolutions"
            raise ModelError(f"the model {space.factory} changed under space {space.name!r}: {what} "
                             f"(fingerprint {tr.fingerprint}, the space's {space.fingerprint}); make the space "
                             "again with `nasconv space from-model`")
    if tr.output_shape != (space.num_classes,):
        raise ModelError(f"the model of space {space.name!r} outputs shape {tr.output_shape} at {resolution}px, "
                         f"not {space.num_classes} logits")
    searched = [n for st in space.stages for n in st.slots]
    calls = {}
    own = Cost()
    for n in searched:
        t = by_name.get(n)
        if t is None or not t.calls:
            raise ModelError(f"convolution {n} of space {space.name!r} is not called at {resolution}px")
        calls[n] = t.calls
        own = own + slot_cost(space.slot_by_name[n], OpChoice.make("standard"), t.calls)
    return Profile(Cost(tr.measured.params - own.params, tr.measured.macs - own.macs), calls)


def slot_cost(slot: Slot, op: OpChoice, calls: tuple[tuple[int, int], ...]) -> Cost:
    """A slot's cost under ``op`` over all its calls: parameters once, MACs per call."""
    k, s = slot.kernel_size, slot.stride
    params, macs = 0, 0
    for h, w in calls:
        if op.name == "standard":  # the model's own convolution, bias included
            c = conv_cost(slot.in_channels, slot.out_channels, k, out_size(h, k, s), out_size(w, k, s), bias=slot.bias)
        else:
            c = op_cost(op.name, slot.in_channels, slot.out_channels, k, h, w, s, **op.kwargs)
            c = Cost(c.params + (slot.out_channels if slot.bias else 0), c.macs)
        params, macs = c.params, macs + c.macs
    return Cost(params, macs)


def stage_cost(space: ModelSpace, i: int, op: OpChoice, prof: Profile) -> Cost:
    total = Cost()
    for n in space.stages[i].slots:
        total = total + slot_cost(space.slot_by_name[n], op, prof.calls[n])
    return total


def model_cost(arch, resolution: int | None = None, *, num_classes: int | None = None,
               in_channels: int | None = None) -> NetworkCost:
    """Exact params and MACs per image of ``build_candidate(arch)`` on a ``resolution`` input."""
    arch = for_classes(arch, num_classes)
    space = arch.model_space
    check_io(space, in_channels)
    prof = profile(space, resolution or space.resolution)
    parts = [("rest", prof.rest)] + [(st.name, stage_cost(space, i, op, prof))
                                     for i, (st, op) in enumerate(zip(space.stages, arch.ops))]
    total = sum((c for _, c in parts), Cost())
    return NetworkCost(total.params, total.macs, tuple(parts))


def cost_bounds(space: ModelSpace) -> dict[str, int]:
    """Exact min and max params and MACs over the space: stages are independent (fixed shapes)."""
    prof = profile(space, space.resolution)
    out = {}
    for field in ("params", "macs"):
        per = [[getattr(stage_cost(space, i, op, prof), field) for op in st.ops] for i, st in enumerate(space.stages)]
        base = getattr(prof.rest, field)
        out[f"min_{field}"] = base + sum(min(v) for v in per)
        out[f"max_{field}"] = base + sum(max(v) for v in per)
    return out
