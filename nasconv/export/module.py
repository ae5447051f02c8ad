"""The standalone module of one architecture: its docstring, its operators' source, the
architecture as plain Python data, the network (:mod:`nasconv.build`'s source) and a smoke test."""

from __future__ import annotations

import json
from typing import Any

from nasconv._version import __version__
from nasconv.arch import ArchSpec, OpChoice
from nasconv.cost import estimate_cost
from nasconv.export.fold import FOLDS, inference_arch
from nasconv.export.source import import_line, network_source, operator_source
from nasconv.ops import get_op

#: the file's last lines: ``python <file>`` builds the network and runs it once
_FOOTER = '''\
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
    lines += sorted((import_line(b, t) for b, t in ops.imports.items()), key=lambda s: (s.startswith("from"), s))
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
    lines += ["]", "", "", "# " + "=" * 20 + " network " + "=" * 20, "", "", network_source(), "", "", _FOOTER]
    return "\n".join(lines)
