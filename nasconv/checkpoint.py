"""Trained weights as a picklable payload, and the network rebuilt from one.

A worker that keeps its trained network returns :func:`weights_payload` (the state dict, on the
CPU, and the architecture it was trained as); :mod:`nasconv.storage.weights` keeps it beside the
study and :func:`model_from_payload` builds the network back (``export --weights``).

Layer: imports ``arch``, ``ops`` and ``build``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from torch import nn

from nasconv.arch import ArchSpec, OpChoice
from nasconv.build import build_model
from nasconv.ops.dynamic import DynamicConv2d

#: version of the :func:`weights_payload` layout (its ``format`` field)
FORMAT_VERSION = 1


def runtime_arch(model: nn.Module) -> ArchSpec:
    """``model.arch`` with settings that live in plain attributes, not in the state dict, read back
    from the modules: dynconv's softmax temperature (annealed during training)."""
    arch = model.arch
    if getattr(arch, "kind", None) is not None:  # a user's own model: its operators' settings as chosen
        return arch
    stages = list(arch.stages)
    for i, st in enumerate(stages):
        if st.op.name != "dynconv":
            continue
        temps = {m.temperature for m in getattr(model, f"layer{i + 1}").modules() if isinstance(m, DynamicConv2d)}
        if len(temps) == 1:
            stages[i] = replace(st, op=OpChoice.make("dynconv", {**st.op.kwargs, "temperature": temps.pop()}))
    return replace(arch, stages=tuple(stages))


def weights_payload(model: nn.Module, *, num_classes: int | None = None) -> dict[str, Any]:
    """What a worker returns for :func:`~nasconv.storage.weights.save_weights`: the trained nasconv
    network's state dict and the architecture it was built from (picklable; tensors on the CPU)."""
    return {"format": FORMAT_VERSION, "trained_arch": runtime_arch(model).to_dict(),
            # a user's own model (another kind) has the classes and channels its space records
            "num_classes": num_classes or (model.arch.num_classes if _own(model) else model.fc.out_features),
            "in_channels": model.arch.in_channels if _own(model) else model.conv1.in_channels,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def _own(model: nn.Module) -> bool:
    return getattr(model.arch, "kind", None) is not None


def model_from_payload(payload: Mapping[str, Any]) -> nn.Module:
    """The network of a :func:`weights_payload`, with its weights (``RuntimeError`` when they do not fit)."""
    model = build_model(ArchSpec.from_dict(payload["trained_arch"]), num_classes=payload["num_classes"],
                        in_channels=payload["in_channels"])
    model.load_state_dict(payload["state_dict"], strict=True)
    return model
