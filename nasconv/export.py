"""Export architectures: standalone PyTorch source (torch only), metadata, weights, TorchScript, ONNX.

For each architecture, ``<name>.py`` holds the operators it uses (their classes, taken from
nasconv's operator modules without the hyperparameter validation), the architecture as plain
Python data, the network and ``build(num_classes=..., in_channels=...)``; it imports torch
alone. ``<name>.json`` holds the architecture spec (``ArchSpec.from_json`` reads it), the
measured metrics, where it came from and the evaluation settings; ``<name>.pt`` the state dict
that the standalone module loads. :func:`load` gives the ready model back.

Training-time structure is folded where the operator allows it (see :data:`FOLDS`): DO-Conv's
over-parameterised ``D o W`` becomes one plain kernel, so the exported network's inference cost
is the analytic one (a folded DO-Conv has the parameters of a plain conv; its MACs never
changed). Every export is checked before it is committed: the standalone module, loaded with
the exported state dict, must give nasconv's outputs.

Nothing is half-written: files are written to a temporary folder beside the output folder and
moved into place at the end; existing files are refused unless ``force``.

Weights of searched candidates: a search that keeps weights stores, per evaluated architecture,
:func:`weights_payload` of its trained model with :func:`save_weights` under
:func:`weights_path` (``<weights dir>/<study>/<arch_hash>.pt``); ``export --weights`` reads them
back. Only weights of the architecture itself are exported: the brief-training proxy usually
trains a reduced copy (fewer blocks, narrower), whose weights fit no exported network.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import functools
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import secrets
import shutil
import sys
import textwrap
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from nasconv import __version__
from nasconv.arch import ArchSpec, OpChoice
from nasconv.build import build_model
from nasconv.cost import estimate_cost
from nasconv.errors import NasconvError, UsageError
from nasconv.ops import get_op, list_ops

FORMAT_VERSION = 1
#: every file an export of ``<name>`` may write, by role
SUFFIXES = {"source": ".py", "metadata": ".json", "weights": ".pt", "torchscript": ".torchscript.pt",
            "onnx": ".onnx"}
#: ``--best`` metric -> (trial attribute, direction)
BEST_METRICS = {"accuracy": ("score", "max"), "latency": ("latency_ms", "min"), "macs": ("macs", "min"),
                "params": ("params", "min")}
#: where kept weights go when the storage is not a SQLite file (or to override it)
WEIGHTS_DIR_ENV = "NASCONV_WEIGHTS_DIR"
#: outputs of nasconv and the standalone module must agree this closely (float32, eval mode)
CHECK_ATOL = 1e-4
#: the export-time check runs at most at this input size (the network is size-agnostic)
CHECK_RESOLUTION = 64


class ExportError(NasconvError):
    """An export that cannot be done: unknown trial, missing weights, existing output..."""


# --- folding ----------------------------------------------------------------------------------


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

    A submodule registered under two names (nasconv's blocks alias their last BN as
    ``last_bn``) appears twice in ``model.state_dict()``; only its first name is kept, which
    is torchvision's.
    """
    folded = fold_model(model)
    owners = {name for name, _ in folded.named_modules()}  # first name of each module only
    return {k: v.detach().clone() for k, v in folded.state_dict().items() if k.rpartition(".")[0] in owners}


def inference_arch(arch: ArchSpec) -> ArchSpec:
    """``arch`` with each folded operator replaced by the one whose cost it has after folding."""
    stages = tuple(replace(s, op=OpChoice.make(FOLDS[s.op.name].inference_op)) if s.op.name in FOLDS else s
                   for s in arch.stages)
    return replace(arch, stages=stages)


def runtime_arch(model: nn.Module) -> ArchSpec:
    """``model.arch`` with settings that live in plain attributes, not in the state dict, read back
    from the modules: dynconv's softmax temperature (annealed during training)."""
    from nasconv.ops.dynamic import DynamicConv2d

    arch = model.arch
    stages = list(arch.stages)
    for i, st in enumerate(stages):
        if st.op.name != "dynconv":
            continue
        temps = {m.temperature for m in getattr(model, f"layer{i + 1}").modules() if isinstance(m, DynamicConv2d)}
        if len(temps) == 1:
            stages[i] = replace(st, op=OpChoice.make("dynconv", {**st.op.kwargs, "temperature": temps.pop()}))
    return replace(arch, stages=tuple(stages))


# --- operator source --------------------------------------------------------------------------


@dataclass(frozen=True)
class _ModuleIndex:
    name: str
    lines: tuple[str, ...]
    defs: dict[str, ast.stmt]
    imports: dict[str, str]  # bound name -> what it is ("torch.nn.functional", "nasconv.ops._registry.require")


@functools.lru_cache(maxsize=None)
def _module_index(module_name: str) -> _ModuleIndex:
    text = inspect.getsource(importlib.import_module(module_name))
    defs: dict[str, ast.stmt] = {}
    imports: dict[str, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    defs[t.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defs[node.target.id] = node
        elif isinstance(node, ast.Import):
            for a in node.names:
                imports[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = "." * node.level + (node.module or "")
            for a in node.names:
                imports[a.asname or a.name] = f"{base}.{a.name}"
    return _ModuleIndex(module_name, tuple(text.splitlines()), defs, imports)


def _is_validate_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "validate"
            and isinstance(node.value.func.value, ast.Name) and node.value.func.value.id == "self")


def _snippet(index: _ModuleIndex, name: str) -> str:
    """The source of one top-level definition, with the comment lines right above it, minus the
    hyperparameter validation (nasconv's registry checks arguments; the exported file is built
    from an architecture that passed them)."""
    node = index.defs[name]
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    while start > 1 and index.lines[start - 2].lstrip().startswith("#"):
        start -= 1
    cut: set[int] = set()
    if isinstance(node, ast.ClassDef):
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "validate":
                first = min([item.lineno] + [d.lineno for d in item.decorator_list])
                cut.update(range(first, item.end_lineno + 1))
        for sub in ast.walk(node):
            if _is_validate_call(sub):
                cut.update(range(sub.lineno, sub.end_lineno + 1))
    kept: list[str] = []
    for i in range(start, node.end_lineno + 1):
        line = index.lines[i - 1]
        if i in cut or (not line.strip() and kept and not kept[-1].strip()):
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    # the standalone helpers raise ValueError where nasconv raises its HyperparameterError
    return "\n".join(kept).replace("HyperparameterError", "ValueError")


class _FreeNames(ast.NodeVisitor):
    """Names a definition reads at run time (annotations are skipped: they are never evaluated)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.names.append(node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for sub in [*node.decorator_list, *node.args.defaults, *[d for d in node.args.kw_defaults if d], *node.body]:
            self.visit(sub)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)


def _free_names(source: str) -> list[str]:
    v = _FreeNames()
    v.visit(ast.parse(source))
    return v.names


#: nasconv helpers that operator code may call outside validation, as standalone source
_SHIMS = {
    "require": '''\
def require(op: str, ok: bool, key: str, rule: str, **values) -> None:
    """Raise ``ValueError`` naming the hyperparameter and the rule it breaks."""
    if not ok:
        got = ", ".join(f"{k}={v!r}" for k, v in values.items())
        raise ValueError(f"{op}: {key}: {rule}, but got {got}")''',
}
#: helpers exported with an operator because training it needs them (not only its forward)
EXTRAS = {"dynconv": ("set_temperature",)}
#: imports the standalone module always has (the network code uses them)
_BASE_IMPORTS = {"torch": "torch", "nn": "torch.nn"}


def _import_line(bound: str, target: str) -> str:
    if "." not in target:
        return f"import {target}" + (f" as {bound}" if bound != target else "")
    parent, _, last = target.rpartition(".")
    return f"from {parent} import {last}" + (f" as {bound}" if bound != last else "")


@dataclass
class _OperatorSource:
    imports: dict[str, str] = field(default_factory=lambda: dict(_BASE_IMPORTS))
    blocks: list[tuple[str, list[str]]] = field(default_factory=list)  # (header comment, definitions)
    classes: dict[str, str] = field(default_factory=dict)  # op -> class name
    defined: dict[str, str] = field(default_factory=dict)  # name -> source (for duplicate checks)

    def add_import(self, bound: str, target: str, op: str) -> None:
        if self.imports.setdefault(bound, target) != target:
            raise ExportError(f"operator {op}: {bound} means {target} in its module but {self.imports[bound]} "
                              "elsewhere; the exporter cannot write both into one file")

    def define(self, name: str, source: str, op: str) -> bool:
        """Record a definition; False when an identical one is already there."""
        if name in self.defined:
            if self.defined[name] != source:
                raise ExportError(f"operator {op}: {name} is defined differently by another operator's module; "
                                  "the exporter cannot write both into one file")
            return False
        self.defined[name] = source
        return True


def operator_source(ops: list[str]) -> _OperatorSource:
    """Standalone source of the operators ``ops`` (registry names), with their helpers and imports."""
    out = _OperatorSource()
    shims: list[str] = []
    for op in [o for o in list_ops() if o in set(ops)]:
        spec = get_op(op)
        header = f"--- {op}: {spec.summary}" + (f" ({spec.paper})" if spec.paper else "")
        if op in FOLDS:
            header += f"; exported folded: {FOLDS[op].note}"
        header = "\n".join(textwrap.wrap(header, 100, initial_indent="# ", subsequent_indent="#     "))
        if op in FOLDS:
            f = FOLDS[op]
            for name in _free_names(f.source):
                if name in ("math", "F"):
                    out.add_import(name, {"math": "math", "F": "torch.nn.functional"}[name], op)
            out.define(f.class_name, f.source, op)
            out.blocks.append((header, [f.source]))
            out.classes[op] = f.class_name
            continue
        index = _module_index(spec.cls.__module__)
        needed: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            if name in index.defs:
                needed.append(name)
                for ref in _free_names(_snippet(index, name)):
                    visit(ref)
            elif name in index.imports:
                target = index.imports[name]
                if target.startswith(("nasconv", ".")):
                    if name not in _SHIMS:
                        raise ExportError(f"operator {op} uses nasconv's {name} outside its validation; "
                                          "the exporter cannot write it standalone")
                    if name not in shims:
                        shims.append(name)
                else:
                    out.add_import(name, target, op)

        for name in (spec.cls.__name__, *EXTRAS.get(op, ())):
            visit(name)
        order = sorted(needed, key=lambda n: index.defs[n].lineno)  # the module's own order is valid
        block = [s for n in order if out.define(n, s := _snippet(index, n), op)]
        out.blocks.append((header, block))
        out.classes[op] = spec.cls.__name__
    if shims:
        out.blocks.insert(0, ("# --- helpers shared by the operators", [_SHIMS[n] for n in shims]))
    return out


# --- the standalone module --------------------------------------------------------------------

_NETWORK_SOURCE = '''\
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


if __name__ == "__main__":  # smoke test: python <this file>
    model = build().eval()
    with torch.no_grad():
        y = model(torch.randn(1, IN_CHANNELS, RESOLUTION, RESOLUTION))
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; output {tuple(y.shape)}")
'''


def _py(value: Any) -> str:
    """A Python literal for plain data (double-quoted strings, like the rest of the file)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _full_hyper(op: OpChoice) -> dict[str, Any]:
    """Every hyperparameter, defaults included, as the registry passes them to the constructor."""
    return {k: op.kwargs.get(k, h.default) for k, h in get_op(op.name).hyper.items()}


def _docstring_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', "'''")


def generate_source(arch: ArchSpec, *, name: str, num_classes: int | None = None, in_channels: int | None = None,
                    provenance: str = "") -> str:
    """The standalone module for ``arch`` (torch only); ``num_classes``/``in_channels`` set the
    defaults of ``build()`` (the architecture's own when None)."""
    num_classes = num_classes or arch.num_classes
    in_channels = in_channels or arch.in_channels
    ops = operator_source([s.op.name for s in arch.stages])
    cost = estimate_cost(inference_arch(arch), num_classes=num_classes, in_channels=in_channels)
    folded = sorted({s.op.name for s in arch.stages if s.op.name in FOLDS})
    doc = [f"{name}: a residual network exported by nasconv {__version__}.", ""]
    doc.append(f"Operator per stage: {arch.ops_label()}.")
    if provenance:
        doc.append(provenance)
    doc += ["", "Standalone: this file needs PyTorch only. ``build()`` returns the network, freshly initialised;",
            f"``model.load_state_dict(torch.load(\"{name}.pt\"))`` loads exported weights (if any were exported).",
            f"Designed for {in_channels} x {arch.resolution} x {arch.resolution} inputs and {num_classes} classes: "
            f"{cost.params:,} parameters", f"and {cost.macs:,} multiply-accumulates per image at that size."]
    if folded:
        doc.append(f"Folded for inference: {', '.join(f'{o} ({FOLDS[o].note})' for o in folded)}.")
    lines = ['"""' + _docstring_text("\n".join(doc)) + '\n"""', "", "from __future__ import annotations", ""]
    lines += sorted((_import_line(b, t) for b, t in ops.imports.items()), key=lambda s: (s.startswith("from"), s))
    lines += ["", "", "# " + "=" * 20 + " operators " + "=" * 20]
    for header, block in ops.blocks:
        lines += ["", "", header, ""]
        lines.append("\n\n\n".join(block))
    lines += ["", "", "#: operator name -> class, called as (in_channels, out_channels, kernel_size, stride, **hyper)",
              "OPERATORS = {" + ", ".join(f"{_py(o)}: {c}" for o, c in ops.classes.items()) + "}",
              "", "", "# " + "=" * 20 + " architecture " + "=" * 20, "",
              f"RESOLUTION = {arch.resolution}  # input size the architecture was designed and costed for",
              f"IN_CHANNELS = {in_channels}", f"NUM_CLASSES = {num_classes}",
              f"STEM = {_py(arch.stem)}  # imagenet: 7x7/2 conv + 3x3/2 max-pool; small: 3x3/2 conv; cifar: 3x3/1 conv",
              f"STEM_WIDTH = {arch.stem_width}",
              "#: per stage: block type, number of blocks, width (a bottleneck's output is width * expansion),",
              "#: stride of the first block, and the operator replacing the 3 x 3 convolution",
              "STAGES = ["]
    for s in arch.stages:
        row = {"block": s.block, "depth": s.depth, "width": s.width, "stride": s.stride, "expansion": s.expansion,
               "op": s.op.name, "hyper": _full_hyper(s.op)}
        lines.append(f"    {_py(row)},")
    lines += ["]", "", "", "# " + "=" * 20 + " network " + "=" * 20, "", "", _NETWORK_SOURCE]
    return "\n".join(lines)


# --- writing ----------------------------------------------------------------------------------


@dataclass
class ExportItem:
    """One architecture to export.

    ``model`` (or what ``load_model`` returns) is a nasconv network (``build_model``) whose state
    becomes ``<name>.pt`` when ``weights``; None builds a fresh one (for the export-time check
    only). ``info`` adds fields to ``<name>.json`` (source, metrics, evaluation).
    """

    name: str
    arch: ArchSpec
    info: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None
    weights: bool = False
    provenance: str = ""
    #: builds ``model`` when it is written (instead of ``model``)
    load_model: Callable[[], nn.Module] | None = None


def safe_name(text: str) -> str:
    """A file-name-safe spelling of a study or space name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip(".") or "model"


def _paths(out: Path, name: str) -> dict[str, Path]:
    return {role: out / f"{name}{suffix}" for role, suffix in SUFFIXES.items()}


@contextlib.contextmanager
def _no_bytecode() -> Iterator[None]:
    old = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # importing the generated file must not leave __pycache__ behind
    try:
        yield
    finally:
        sys.dont_write_bytecode = old


def import_source(path: Path, module_name: str | None = None) -> Any:
    """Import a generated ``.py`` as a module (registered in ``sys.modules`` under a unique name)."""
    module_name = module_name or f"nasconv_export_{safe_name(path.stem).replace('-', '_').replace('.', '_')}_" \
                                 f"{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ExportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with _no_bytecode():
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _check_onnx_available() -> None:
    if importlib.util.find_spec("onnx") is None:
        raise ExportError("--onnx needs the onnx package, which is not installed: pip install 'nasconv[onnx]'")


def _write_item(tmp: Path, item: ExportItem, *, torchscript: bool, onnx: bool) -> list[str]:
    """Write one architecture's files into ``tmp``; returns their roles."""
    arch = item.arch
    model = item.model if item.model is not None else item.load_model() if item.load_model else None
    if model is None:
        with torch.random.fork_rng(devices=[]):  # leave the caller's random stream alone
            model = build_model(arch)
    else:
        arch = runtime_arch(model)  # e.g. an annealed dynconv temperature
    num_classes, in_channels = model.fc.out_features, model.conv1.in_channels
    was_training = model.training
    try:
        model.eval()
        return _write_files(tmp, item, arch, model, num_classes, in_channels, torchscript=torchscript, onnx=onnx)
    finally:
        model.train(was_training)


def _write_files(tmp: Path, item: ExportItem, arch: ArchSpec, model: nn.Module, num_classes: int, in_channels: int,
                 *, torchscript: bool, onnx: bool) -> list[str]:
    state = export_state_dict(model)
    paths = _paths(tmp, item.name)
    source = generate_source(arch, name=item.name, num_classes=num_classes, in_channels=in_channels,
                             provenance=item.provenance)
    paths["source"].write_text(source)
    roles = ["source"]

    module = import_source(paths["source"])
    try:
        net = module.build(num_classes=num_classes, in_channels=in_channels)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ExportError(f"internal error: the standalone {item.name} does not load nasconv's state dict: "
                              f"{_one_line(exc)}") from None
        net.eval()
        res = min(arch.resolution, CHECK_RESOLUTION)
        x = torch.randn(1, in_channels, res, res, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected, got = model(x), net(x)
        # equal_nan: random weights can overflow; the two must then overflow alike
        if not torch.allclose(got, expected, rtol=CHECK_ATOL, atol=CHECK_ATOL, equal_nan=True):
            diff = float((expected - got).abs().max())
            raise ExportError(f"internal error: the standalone {item.name} differs from nasconv's model "
                              f"(max abs diff {diff:.3g})")
        params = sum(p.numel() for p in net.parameters())  # == cost.params: the tests check it
        cost = estimate_cost(inference_arch(arch), num_classes=num_classes, in_channels=in_channels)
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION, "name": item.name,
            "arch": item.arch.to_dict(), "arch_hash": item.arch.arch_hash, "ops": item.arch.ops_label(),
            **item.info,
            "inference": {"params": params, "macs": cost.macs,
                          "resolution": arch.resolution, "num_classes": num_classes, "in_channels": in_channels,
                          "folded": [{"stage": i, "op": s.op.name, "into": FOLDS[s.op.name].note}
                                     for i, s in enumerate(arch.stages) if s.op.name in FOLDS]},
            "build": {"num_classes": num_classes, "in_channels": in_channels},
            "files": {},
            "exported_by": {"nasconv_version": __version__, "torch_version": torch.__version__},
        }
        if arch != item.arch:
            meta["inference"]["arch"] = arch.to_dict()  # the settings the weights were trained to
        if item.weights:
            torch.save(state, paths["weights"])
            roles.append("weights")
        weights_note = "exported" if item.weights else "untrained (fresh initialisation)"
        example = torch.randn(1, in_channels, arch.resolution, arch.resolution,
                              generator=torch.Generator().manual_seed(1))
        if torchscript:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(net, example, check_trace=False)
                same = torch.allclose(traced(example), net(example), rtol=CHECK_ATOL, atol=CHECK_ATOL, equal_nan=True)
            if not same:
                raise ExportError(f"the traced {item.name} differs from the module")
            torch.jit.save(traced, str(paths["torchscript"]))
            meta["torchscript"] = {"method": "trace", "input_shape": list(example.shape), "weights": weights_note,
                                   "any_batch_size": _works_batched(traced, net, example)}
            roles.append("torchscript")
        if onnx:
            _write_onnx(net, example, paths["onnx"], item.name)
            meta["onnx"] = {"input_shape": list(example.shape), "input": "input", "output": "logits",
                            "weights": weights_note}
            roles.append("onnx")
    finally:
        sys.modules.pop(module.__name__, None)
    meta["files"] = {role: paths[role].name for role in roles} | {"metadata": paths["metadata"].name}
    paths["metadata"].write_text(json.dumps(meta, indent=2) + "\n")
    roles.append("metadata")
    return roles


def _works_batched(traced: Any, net: nn.Module, example: torch.Tensor) -> bool:
    """Whether a model traced at batch 1 also serves batch 2 (per-sample kernels such as condconv's
    turn the batch size into a constant of the trace)."""
    x = torch.cat([example, example.flip(-1)])
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.allclose(traced(x), net(x), rtol=CHECK_ATOL, atol=CHECK_ATOL, equal_nan=True)
    except Exception:
        return False


def _write_onnx(net: nn.Module, example: torch.Tensor, path: Path, name: str) -> None:
    _check_onnx_available()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), input_names=["input"], output_names=["logits"],
                              opset_version=17, dynamo=False)
        import onnx

        onnx.checker.check_model(str(path))
    except NasconvError:
        raise
    except Exception as exc:
        raise ExportError(f"ONNX export of {name} failed: {_one_line(exc)}") from None


def write_exports(items: list[ExportItem], out: str | Path, *, torchscript: bool = False, onnx: bool = False,
                  force: bool = False) -> list[Path]:
    """Export ``items`` into folder ``out``: all files or none.

    Refuses (:class:`ExportError`) when a file of one of the names exists, unless ``force``,
    which also removes such files that this export does not write again (a stale ``.pt`` would
    not fit the new ``.py``).
    """
    out = Path(os.path.abspath(out))  # "." and "a/.." have a real name and parent
    if onnx:
        _check_onnx_available()
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise ExportError(f"two architectures would be exported under one name: {', '.join(names)}")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    existing = [p for n in names for p in _paths(out, n).values() if p.exists() or p.is_symlink()]
    if existing and not force:
        raise ExportError(f"{existing[0]} exists; pass --force to overwrite")
    created = _make_parents(out.parent)
    tmp = out.parent / f".{out.name}.export-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        tmp.mkdir()
        written: list[tuple[str, str]] = []
        for item in items:
            written += [(item.name, role) for role in _write_item(tmp, item, torchscript=torchscript, onnx=onnx)]
        files = [_paths(tmp, n)[role].name for n, role in written]
        if not out.exists():
            os.rename(tmp, out)
        else:
            for p in existing:
                if p.name not in files:
                    p.unlink()
            for f in files:
                os.replace(tmp / f, out / f)
            tmp.rmdir()
    except OSError as exc:
        _cleanup(tmp, created)
        raise ExportError(f"cannot write to {out}: {exc.strerror or exc}") from None
    except BaseException:
        _cleanup(tmp, created)
        raise
    return [out / f for f in files]


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns what was created (deepest first)."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {folder}: {exc.strerror}") from None
    return missing


def _cleanup(tmp: Path, created: list[Path]) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    for p in created:  # deepest first
        with contextlib.suppress(OSError):
            p.rmdir()


# --- sources of architectures -----------------------------------------------------------------


def export_model(model: nn.Module, out: str | Path, name: str | None = None, *, weights: bool = True,
                 info: Mapping[str, Any] | None = None, torchscript: bool = False, onnx: bool = False,
                 force: bool = False) -> list[Path]:
    """Export a nasconv network (``build_model``), with its current weights when ``weights``."""
    arch: ArchSpec = model.arch
    item = ExportItem(name or f"{safe_name(arch.space)}-{arch.arch_hash}", arch, dict(info or {}), model, weights)
    return write_exports([item], out, torchscript=torchscript, onnx=onnx, force=force)


def export_space_arch(space: Any, arch: ArchSpec, out: str | Path, *, arch_source: str = "", torchscript: bool = False,
                      onnx: bool = False, force: bool = False) -> list[Path]:
    """Export one architecture of a search space, untrained (no study: nothing was measured)."""
    is_baseline = arch == space.baseline()
    name = f"{safe_name(space.name)}-{'baseline' if is_baseline else arch.arch_hash}"
    cost = estimate_cost(arch)
    info = {"source": {"space": space.name, "arch": arch_source or ("baseline" if is_baseline else None)},
            "metrics": {"params": cost.params, "macs": cost.macs, "measured": False}, "evaluation": None}
    prov = f"From search space {space.name} ({'its all-standard baseline' if is_baseline else 'untrained'})."
    item = ExportItem(name, arch, info, provenance=prov)
    return write_exports([item], out, torchscript=torchscript, onnx=onnx, force=force)


def select_trials(study: Any, *, trial: int | None = None, pareto: bool = False,
                  best: str | None = None) -> list[Any]:
    """The trials ``--trial N`` / ``--pareto`` / ``--best METRIC`` name, checked to have been evaluated."""
    from optuna.trial import TrialState

    from nasconv.results import study_front

    name = study.study_name
    if sum((trial is not None, pareto, best is not None)) != 1:
        raise UsageError("choose one of --trial N, --pareto, --best METRIC")
    trials = study.get_trials(deepcopy=False)
    if trial is not None:
        found = [t for t in trials if t.number == trial]
        if not found:
            span = f"trials 0..{max(t.number for t in trials)}" if trials else "no trials"
            raise ExportError(f"study {name!r} has no trial {trial} ({span})")
        t = found[0]
        if t.state != TrialState.COMPLETE:
            reason = t.user_attrs.get("fail_reason")
            raise ExportError(f"trial {trial} of study {name!r} did not complete (state {t.state.name}"
                              f"{': ' + reason if reason else ''})")
        if t.user_attrs.get("status") not in ("evaluated", "cached") or "arch" not in t.user_attrs:
            why = t.user_attrs.get("reject_reason") or f"status {t.user_attrs.get('status')!r}"
            raise ExportError(f"trial {trial} of study {name!r} was never evaluated ({why})")
        return [t]
    if pareto:
        front = study_front(study)
        if not front:
            raise ExportError(f"study {name!r} has no evaluated trial on its Pareto front yet")
        return front
    if best not in BEST_METRICS:
        raise UsageError(f"--best must be one of {', '.join(BEST_METRICS)}, got {best!r}")
    key, direction = BEST_METRICS[best]
    done = [t for t in trials
            if t.state == TrialState.COMPLETE and t.user_attrs.get("status") in ("evaluated", "cached")
            and all(v <= 0 for v in t.constraints.values()) and isinstance(t.user_attrs.get(key), (int, float))
            and math.isfinite(t.user_attrs[key])]
    if not done:
        raise ExportError(f"study {name!r} has no evaluated, feasible trial with a {key} value")
    sign = -1 if direction == "max" else 1
    return [min(done, key=lambda t: (sign * t.user_attrs[key], t.number))]


def export_study(study_name: str, out: str | Path, *, storage: str | None = None, trial: int | None = None,
                 pareto: bool = False, best: str | None = None, weights: bool = False, torchscript: bool = False,
                 onnx: bool = False, force: bool = False) -> list[Path]:
    """Export trials of a study (one, its Pareto front, or the best on one metric)."""
    from nasconv.results import load_study
    from nasconv.storage import DEFAULT_STORAGE, parse_url, safe_url

    storage = storage or DEFAULT_STORAGE
    if onnx:
        _check_onnx_available()
    url = parse_url(storage)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).expanduser().is_file():
        # opening it would create an empty database (and its folder) just to find no study there
        raise ExportError(f"no study {study_name!r}: the study database {url.database} does not exist")
    study, tables = load_study(study_name, storage)
    tables.dispose()
    attrs = study.user_attrs
    items = []
    for t in select_trials(study, trial=trial, pareto=pareto, best=best):
        arch = ArchSpec.from_dict(t.user_attrs["arch"])
        name = f"{safe_name(study_name)}-trial{t.number}"
        info: dict[str, Any] = {
            "source": {"study": study_name, "trial": t.number, "storage": safe_url(storage),
                       "status": t.user_attrs.get("status"), "space": attrs.get("space")},
            "metrics": {k: v for k, v in t.user_attrs.items() if k not in ("arch", "driver", "status", "ops")}
            | {"values": list(t.values or []), "objectives": attrs.get("objectives"),
               "constraints": dict(t.constraints)},
            "evaluation": {"config": attrs.get("eval_config"), "settings_key": attrs.get("settings_key"),
                           "budget": attrs.get("budget"), "objectives": attrs.get("objectives")},
        }
        item = ExportItem(name, arch, info, provenance=f"From study {study_name}, trial {t.number}.")
        if weights:
            kept = load_weights(storage, study_name, arch.arch_hash)
            if kept is None:
                raise ExportError(f"no kept weights for trial {t.number} of study {study_name!r} (looked for "
                                  f"{weights_path(storage, study_name, arch.arch_hash)}); search with "
                                  "--keep-weights --full-proxy to keep them")
            trained = ArchSpec.from_dict(kept["trained_arch"])
            if _comparable(trained) != _comparable(arch):
                raise ExportError(f"the kept weights of trial {t.number} of study {study_name!r} belong to the "
                                  f"reduced proxy copy ({trained.ops_label()}; depths "
                                  f"{[s.depth for s in trained.stages]}, widths {[s.width for s in trained.stages]})"
                                  ", not to the architecture; search with --full-proxy to export trained weights")
            # built when written, so that a whole front's networks are never in memory at once
            item.load_model = functools.partial(_kept_model, storage, study_name, arch.arch_hash, t.number)
            item.weights = True
            cfg = (attrs.get("eval_config") or {}).get("train") or {}
            info["weights"] = {"trained_on": (attrs.get("eval_config") or {}).get("data"),
                               "resolution": cfg.get("resolution"), "num_classes": kept["num_classes"],
                               "in_channels": kept["in_channels"], "steps": t.user_attrs.get("steps"),
                               "accuracy": t.user_attrs.get("accuracy")}
            item.provenance += (f" Weights: {t.user_attrs.get('steps')} steps of brief training on "
                                f"{info['weights']['trained_on']} at {cfg.get('resolution')} px.")
        items.append(item)
    return write_exports(items, out, torchscript=torchscript, onnx=onnx, force=force)


def _kept_model(storage: str, study: str, arch_hash: str, number: int) -> nn.Module:
    kept = load_weights(storage, study, arch_hash)
    if kept is None:
        raise ExportError(f"the kept weights of trial {number} of study {study!r} disappeared during the export")
    model = build_model(ArchSpec.from_dict(kept["trained_arch"]), num_classes=kept["num_classes"],
                        in_channels=kept["in_channels"])
    try:
        model.load_state_dict(kept["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ExportError(f"the kept weights of trial {number} do not fit its architecture: {_one_line(exc)}") from None
    return model


def _comparable(arch: ArchSpec) -> ArchSpec:
    """What must agree between a trained copy and the architecture: not the class count (the
    proxy trains on its data set's classes) nor dynconv's temperature (annealed in training)."""
    stages = tuple(replace(s, op=OpChoice.make(s.op.name, {k: v for k, v in s.op.kwargs.items()
                                                          if not (s.op.name == "dynconv" and k == "temperature")}))
                   for s in arch.stages)
    return replace(arch, num_classes=0, stages=stages)


# --- loading an export ------------------------------------------------------------------------


def load(path: str | Path, *, weights: bool = True, map_location: str | torch.device = "cpu") -> nn.Module:
    """The exported network at ``path`` (``DIR/<name>``, or any of its files), in eval mode, with
    the exported weights when there are some."""
    text = str(path)
    for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    paths = {role: Path(text + suffix) for role, suffix in SUFFIXES.items()}
    if not paths["source"].is_file():
        raise ExportError(f"no exported model at {text} ({paths['source']} is missing)")
    kwargs: dict[str, Any] = {}
    if paths["metadata"].is_file():
        try:
            kwargs = dict(json.loads(paths["metadata"].read_text()).get("build") or {})
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"cannot read {paths['metadata']}: {exc}") from None
    module = import_source(paths["source"])
    model = module.build(**kwargs)
    if weights and paths["weights"].is_file():
        try:
            state = torch.load(paths["weights"], map_location=map_location, weights_only=True)
            model.load_state_dict(state)
        except (OSError, RuntimeError, EOFError, ValueError) as exc:
            raise ExportError(f"cannot load the weights {paths['weights']}: {_one_line(exc)}") from None
    return model.to(map_location).eval()


# --- kept weights of a search -----------------------------------------------------------------


def keep_weights_problem(space: Any, eval_config: Any) -> str | None:
    """Why a search of ``space`` evaluated with ``eval_config`` cannot keep exportable weights, or
    None when it can: only a proxy that trains the architecture itself gives them."""
    if eval_config.proxy != "train":
        return f"--keep-weights needs the training proxy (--proxy train), got {eval_config.proxy!r}"
    t = eval_config.train
    if ((t.max_depth is not None and any(t.max_depth < max(st.depths) for st in space.stages))
            or t.width_factor != 1.0 or (t.small_stem and space.stem == "imagenet")):
        return ("--keep-weights needs the proxy to train the architecture itself, not a reduced copy "
                f"(max_depth={t.max_depth}, width_factor={t.width_factor}, small_stem={t.small_stem}): "
                "add --full-proxy")
    return None


def weights_dir(storage: str) -> Path:
    """Where a search on ``storage`` keeps weights: ``$NASCONV_WEIGHTS_DIR``; else ``weights/``
    beside a SQLite database file; else ``studies/weights`` in the current folder."""
    if os.environ.get(WEIGHTS_DIR_ENV):
        return Path(os.environ[WEIGHTS_DIR_ENV])
    from nasconv.storage import parse_url

    url = parse_url(storage)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().parent / "weights"
    return Path("studies") / "weights"


def weights_path(storage: str, study: str, arch_hash: str) -> Path:
    """``<weights dir>/<study>/<arch_hash>.pt``: by architecture, since trials that repeat an
    architecture share its one evaluation."""
    return weights_dir(storage) / safe_name(study) / f"{arch_hash}.pt"


def weights_payload(model: nn.Module, *, num_classes: int | None = None) -> dict[str, Any]:
    """What a worker returns for :func:`save_weights`: the trained nasconv network's state dict and
    the architecture it was built from (picklable; tensors on the CPU)."""
    return {"format": FORMAT_VERSION, "trained_arch": runtime_arch(model).to_dict(),
            "num_classes": num_classes or model.fc.out_features, "in_channels": model.conv1.in_channels,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def save_weights(storage: str, study: str, arch_hash: str, payload: Mapping[str, Any]) -> Path:
    """Keep ``payload`` (:func:`weights_payload`) for ``arch_hash`` in ``study``; atomic."""
    path = weights_path(storage, study, arch_hash)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(payload), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ExportError(f"cannot keep weights in {path.parent}: {exc.strerror}") from None
    return path


def load_weights(storage: str, study: str, arch_hash: str) -> dict[str, Any] | None:
    """The kept payload for ``arch_hash`` in ``study``, or None."""
    path = weights_path(storage, study, arch_hash)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(f"cannot read kept weights {path}: {_one_line(exc)}") from None


def prune_weights(storage: str, study: str, keep: set[str]) -> int:
    """Delete the study's kept weights except those of the architecture hashes in ``keep`` (e.g.
    the Pareto front); returns how many files were removed."""
    folder = weights_dir(storage) / safe_name(study)
    removed = 0
    for p in folder.glob("*.pt") if folder.is_dir() else []:
        if p.stem not in keep:
            p.unlink(missing_ok=True)
            removed += 1
    return removed
