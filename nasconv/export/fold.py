"""Folding: an operator's training-time structure becomes its inference form on export.

DO-Conv's over-parameterised ``D o W`` becomes one plain kernel, so the exported network's
inference cost is the analytic one (a folded DO-Conv has the parameters of a plain conv; its
MACs never changed).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from nasconv.arch import ArchSpec, OpChoice
from nasconv.ops import get_op


@dataclass(frozen=True)
class Fold:
    """How an operator's training-time structure becomes its inference form on export.

    ``fold(module)`` returns an ``nn.Module`` whose state dict the standalone class
    ``class_name`` (defined by ``source``) loads; ``inference_op`` is the operator whose
    analytic cost the folded layer has.
    """

    op: str
    class_name: str
    source: str
    fold: Callable[[nn.Module], nn.Module]
    inference_op: str
    note: str


_FOLDED_DOCONV = '''\
class FoldedDOConv2d(nn.Conv2d):
    """DO-Conv (Cao et al., 2020) folded for inference: one plain ``k x k`` kernel, bias-free.

    In training, DO-Conv composes its kernel from two trainable factors, ``W' = D o W`` (a
    depthwise over-parameterisation); the export folded them into the single kernel ``W'``
    stored here, so the layer costs exactly a plain convolution. Fine-tuning trains ``W'``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                 depth_multiplier: int | None = None) -> None:
        # depth_multiplier shaped the training-time factorisation only; the folded kernel has none
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False)'''

#: operator -> its fold; every other operator is exported with its training-time structure
FOLDS: dict[str, Fold] = {
    "doconv": Fold("doconv", "FoldedDOConv2d", _FOLDED_DOCONV, lambda m: m.fold(), "standard",
                   "D o W folded into one plain k x k kernel"),
}


def _fold_for(module: nn.Module) -> Fold | None:
    for f in FOLDS.values():
        if type(module) is get_op(f.op).cls:
            return f
    return None


def fold_model(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """``model`` with every foldable operator replaced by its inference form (see :data:`FOLDS`).

    Not in place by default: a model with something to fold is copied first (one without is
    returned as is).
    """
    targets = [(name, m) for name, m in model.named_modules() if _fold_for(m) is not None]
    if not targets:
        return model
    if not inplace:
        model = copy.deepcopy(model)
    for name, _ in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, child)
        with torch.no_grad():
            new = _fold_for(old).fold(old)
        setattr(parent, child, new.train(old.training))
    return model


def export_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict the standalone module loads: folded, and each tensor under one name only.

    A submodule registered under two names would appear twice in ``model.state_dict()``; only
    its first name is kept, which is torchvision's.
    """
    folded = fold_model(model)
    owners = {name for name, _ in folded.named_modules()}  # first name of each module only
    return {k: v.detach().clone() for k, v in folded.state_dict().items() if k.rpartition(".")[0] in owners}


def inference_arch(arch: ArchSpec) -> ArchSpec:
    """``arch`` with each folded operator replaced by the one whose cost it has after folding."""
    stages = tuple(replace(s, op=OpChoice.make(FOLDS[s.op.name].inference_op)) if s.op.name in FOLDS else s
                   for s in arch.stages)
    return replace(arch, stages=stages)
