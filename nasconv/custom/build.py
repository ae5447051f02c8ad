"""Build a candidate: a fresh instance from the user's factory, optionally loaded with their
trained weights, with each stage's slots swapped for the chosen operator (module surgery)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasconv.custom.classes import for_classes
from nasconv.custom.errors import ModelError
from nasconv.custom.factory import call_factory, space_factory
from nasconv.custom.trace import fingerprint
from nasconv.custom.weights import load_init_weights
from nasconv.ops import create_op

if TYPE_CHECKING:
    from nasconv.custom.arch import ModelArch
    from nasconv.custom.space import ModelSpace, Slot


class BiasedOp(nn.Module):
    """An operator standing in for a convolution that had a bias: the operator, then the bias
    (kept from the replaced convolution, so trained weights carry over)."""

    def __init__(self, op: nn.Module, bias: torch.Tensor) -> None:
        super().__init__()
        self.op = op
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) + self.bias.view(1, -1, 1, 1)


def fresh_model(space: ModelSpace) -> nn.Module:
    """``factory(**kwargs)`` as the space names it, checked against the space's fingerprint."""
    factory = space_factory(space)
    model = call_factory(factory, space.kwargs, space.factory)
    if fingerprint(model) != space.fingerprint:
        from nasconv.custom.cost import profile  # runs the model to say what changed

        profile(space, space.resolution)
        raise ModelError(f"the model {space.factory} changed under space {space.name!r}: fingerprint "
                         f"{fingerprint(model)}, the space's {space.fingerprint} (module names or parameter "
                         "shapes); make the space again with `nasconv space from-model`")
    return model


def replace_slot(model: nn.Module, slot: Slot, new: nn.Module) -> None:
    """Put ``new`` where ``slot`` is, under each of its names."""
    for name in (slot.name, *slot.aliases):
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new)


def build_candidate(arch: ModelArch, *, num_classes: int | None = None, in_channels: int | None = None) -> nn.Module:
    """The user's model with the candidate's operators in place; ``init_from`` weights for the rest."""
    arch = for_classes(arch, num_classes)  # the data's head, or the one line why the model cannot have it
    space = arch.model_space
    check_io(space, in_channels)
    model = fresh_model(space)
    if space.init_from:
        load_init_weights(model, space)
    slots = space.slot_by_name
    for stage, op in zip(space.stages, arch.ops):
        if op.name == "standard":
            continue  # the model's own convolution (its bias and weights included)
        for name in stage.slots:
            slot = slots[name]
            old = model.get_submodule(name)
            new = create_op(op.name, slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride, **op.kwargs)
            if old.bias is not None:
                new = BiasedOp(new, old.bias)
            replace_slot(model, slot, new.to(device=old.weight.device, dtype=old.weight.dtype))
    model.arch = arch  # what export and kept weights record, as for nasconv's own networks
    return model


def check_io(space: ModelSpace, in_channels: int | None) -> None:
    if in_channels is not None and in_channels != space.in_channels:
        raise ModelError(f"the model of space {space.name!r} reads {space.in_channels}-channel images, not "
                         f"{in_channels}")


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


def describe(model: nn.Module) -> dict[str, Any]:
    """Which module each slot now is (for a report or a test)."""
    return {n: type(m).__name__ for n, m in model.named_modules()}
