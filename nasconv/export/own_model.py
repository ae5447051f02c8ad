"""Export a candidate of a user's own model (``kind: model``): a ``.py`` that imports the user's
factory (their code stays theirs, imported, never copied), builds the model and applies the
replacements with nasconv's operators embedded as standalone source (no nasconv import); the
weights, metadata and optionally TorchScript and ONNX beside it, as for nasconv's own networks.
Operators are exported in their training form (no folding)."""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasconv._version import __version__
from nasconv.cost import estimate_cost
from nasconv.custom import ModelArch
from nasconv.custom.build import BiasedOp
from nasconv.export.errors import ExportError
from nasconv.export.module import _FOOTER, _docstring_text, _full_hyper, _py
from nasconv.export.source import import_line, operator_source
from nasconv.export.write import write_metadata

#: how the exported file finds and calls the factory, and applies the replacements
_BUILD = '''
def _factory():
    """The user's factory, imported (a .py path: from this file's folder, else as written)."""
    module_ref, _, name = FACTORY.rpartition(":")
    if module_ref.endswith(".py") or "/" in module_ref:
        path = Path(module_ref)
        if not path.is_absolute() and (Path(__file__).parent / path).is_file():
            path = Path(__file__).parent / path
        spec = importlib.util.spec_from_file_location(f"_user_model_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_ref)
    return getattr(module, name)


def build(num_classes: int = NUM_CLASSES, in_channels: int = IN_CHANNELS) -> nn.Module:
    """The user's model with the replacements applied, freshly initialised (``load_state_dict`` the weights)."""
    if (num_classes, in_channels) != (NUM_CLASSES, IN_CHANNELS):
        raise ValueError(f"this model is built for {IN_CHANNELS} channels and {NUM_CLASSES} classes")
    model = _factory()(**FACTORY_KWARGS)
    for r in REPLACEMENTS:
        new = OPERATORS[r["op"]](r["in"], r["out"], r["kernel"], r["stride"], **r["hyper"])
        if r["bias"]:
            new = BiasedOp(new, torch.zeros(r["out"]))
        for name in r["names"]:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    return model
'''


def _factory_ref(arch: ModelArch) -> str:
    """The factory as the exported file will find it: a .py path made absolute."""
    space = arch.model_space
    module_ref, _, name = space.factory.rpartition(":")
    if module_ref.endswith(".py") or "/" in module_ref:
        p = Path(module_ref)
        if not p.is_file() and space.base_dir:
            p = Path(space.base_dir) / module_ref
        module_ref = str(p.resolve())
    return f"{module_ref}:{name}"


def model_source(arch: ModelArch, *, name: str, provenance: str = "") -> str:
    """The standalone ``.py`` of a model-space candidate (torch and the user's factory only)."""
    space = arch.model_space
    replaced = [(st, op) for st, op in zip(space.stages, arch.ops) if op.name != "standard"]
    ops = operator_source(sorted({op.name for _, op in replaced}))
    cost = estimate_cost(arch)
    doc = [f"{name}: {space.factory} with nasconv {__version__}'s operators swapped in.", "",
           f"Operator per stage: {arch.ops_label()}.", *( [provenance] if provenance else []), "",
           "The model itself comes from the user's factory (imported, not copied); the operators below are",
           "standalone (torch only). ``build()`` returns the network freshly initialised;",
           f"``model.load_state_dict(torch.load(\"{name}.pt\"))`` loads exported weights (if any were exported).",
           f"Designed for {space.in_channels} x {space.resolution} x {space.resolution} inputs and "
           f"{space.num_classes} classes: {cost.params:,} parameters", f"and {cost.macs:,} multiply-accumulates "
           "per image at that size."]
    lines = ['"""' + _docstring_text("\n".join(doc)) + '\n"""', "", "from __future__ import annotations", "",
             "import importlib", "import importlib.util", "import sys", "from pathlib import Path", ""]
    imports = dict(ops.imports) | {"torch": "torch", "nn": "torch.nn"}
    lines += sorted((import_line(b, t) for b, t in imports.items()), key=lambda s: (s.startswith("from"), s))
    lines += ["", "", "# " + "=" * 20 + " operators " + "=" * 20]
    for header, block in ops.blocks:
        lines += ["", "", header, ""]
        lines.append("\n\n\n".join(block))
    lines += ["", "", inspect.getsource(BiasedOp).rstrip(), "", "",
              "#: operator name -> class, called as (in_channels, out_channels, kernel_size, stride, **hyper)",
              "OPERATORS = {" + ", ".join(f"{_py(o)}: {c}" for o, c in ops.classes.items()) + "}",
              "", "", "# " + "=" * 20 + " the model and its replacements " + "=" * 20, "",
              f"FACTORY = {_py(_factory_ref(arch))}", f"FACTORY_KWARGS = {_py(space.kwargs)}",
              f"RESOLUTION = {space.resolution}", f"IN_CHANNELS = {space.in_channels}",
              f"NUM_CLASSES = {space.num_classes}",
              "#: per replaced convolution: its module name(s), the operator and its shape; the other",
              "#: convolutions are the model's own", "REPLACEMENTS = ["]
    slots = space.slot_by_name
    for st, op in replaced:
        for n in st.slots:
            s = slots[n]
            row = {"names": [s.name, *s.aliases], "op": op.name, "in": s.in_channels, "out": s.out_channels,
                   "kernel": s.kernel_size, "stride": s.stride, "hyper": _full_hyper(op), "bias": s.bias}
            lines.append(f"    {_py(row)},")
    lines += ["]", "", _BUILD, "", "", _FOOTER]
    return "\n".join(lines)


def write_model_files(tmp: Path, item: Any, paths: dict[str, Path], *, torchscript: bool, onnx: bool,
                      import_source: Any, write_onnx: Any, save_bytes: Any, atol: float) -> list[str]:
    """Write one model-space candidate's files into ``tmp`` (called by :mod:`.write`); returns their roles."""
    arch: ModelArch = item.arch
    model = item.model if item.model is not None else item.load_model() if item.load_model else None
    if model is None:
        with torch.random.fork_rng(devices=[]):
            model = arch.build()
    model.eval()
    state = model.state_dict()
    source = model_source(arch, name=item.name, provenance=item.provenance)
    paths["source"].write_text(source)
    roles = ["source"]
    module = import_source(paths["source"])
    try:
        net: nn.Module = module.build()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ExportError(f"internal error: the standalone {item.name} does not load the candidate's state "
                              f"dict: {' '.join(str(exc).split())[:300]}") from None
        net.eval()
        space = arch.model_space
        x = torch.randn(1, *space.input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected, got = model(x), net(x)
        if not torch.allclose(got, expected, rtol=atol, atol=atol, equal_nan=True):
            raise ExportError(f"internal error: the standalone {item.name} differs from the built candidate "
                              f"(max abs diff {float((expected - got).abs().max()):.3g})")
        cost = estimate_cost(arch)
        meta: dict[str, Any] = {
            "format": 1, "name": item.name, "arch": arch.to_dict(), "arch_hash": arch.arch_hash,
            "ops": arch.ops_label(), **item.info,
            "inference": {"params": cost.params, "macs": cost.macs, "resolution": space.resolution,
                          "num_classes": space.num_classes, "in_channels": space.in_channels, "folded": []},
            "build": {}, "files": {},
            "exported_by": {"nasconv_version": __version__, "torch_version": torch.__version__},
        }
        if item.weights:
            save_bytes(paths["weights"], lambda f: torch.save(state, f))
            roles.append("weights")
        if torchscript:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # operators pick a code path by shape: fixed for this input
                traced = torch.jit.trace(net, x, check_trace=False)
                if not torch.allclose(traced(x), net(x), rtol=atol, atol=atol, equal_nan=True):
                    raise ExportError(f"the traced {item.name} differs from the module")
            save_bytes(paths["torchscript"], lambda f: torch.jit.save(traced, f))
            meta["torchscript"] = {"method": "trace", "input_shape": list(x.shape)}
            roles.append("torchscript")
        if onnx:
            write_onnx(net, x, paths["onnx"], item.name)
            meta["onnx"] = {"input_shape": list(x.shape), "input": "input", "output": "logits"}
            roles.append("onnx")
    finally:
        sys.modules.pop(module.__name__, None)
    return write_metadata(meta, paths, roles)

