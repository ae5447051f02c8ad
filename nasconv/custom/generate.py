"""From a user's model to a space: trace it once, group its replaceable convolutions into stages
(consecutive ones at the same output size), give each stage the registered operators and
hyperparameter settings valid for all of its convolutions, and write an editable space file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from nasconv.arch import OpChoice
from nasconv.custom.cost import slot_cost
from nasconv.custom.errors import ModelError, ModelUsageError
from nasconv.custom.factory import call_factory, load_factory
from nasconv.custom.space import KIND, ModelSpace, Slot, choices_data, parse_model_space, slot_op_error
from nasconv.custom.trace import fingerprint, trace_model
from nasconv.ops import get_op, list_ops
from nasconv.ops.complexity import out_size

MAX_INPUT_SIDE = 4096
MAX_INPUT_CHANNELS = 1024


def parse_input(text: str) -> tuple[int, int, int]:
    """``3x32x32`` -> ``(3, 32, 32)`` (channels, height, width; square images)."""
    try:
        parts = tuple(int(p) for p in str(text).lower().replace(",", "x").split("x"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise ModelUsageError(f"--input must be CxHxW (three positive integers, e.g. 3x32x32), got {text!r}")
    c, h, w = parts
    if h != w:
        raise ModelUsageError(f"--input must be a square image (height = width), got {text!r}")
    if c > MAX_INPUT_CHANNELS or h > MAX_INPUT_SIDE:
        raise ModelUsageError(f"--input {text} is larger than {MAX_INPUT_CHANNELS}x{MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}")
    return parts  # type: ignore[return-value]


def _plain(op: OpChoice, slots: Sequence[Slot]) -> bool:
    """Whether ``op`` is the plain convolution again (gc with 1 group, hetconv with P = 1...):
    the same parameters and MACs as ``standard`` on every slot."""
    std = OpChoice.make("standard")
    return op != std and all(slot_cost(s, op, s.calls) == slot_cost(s, std, s.calls) for s in slots)


def default_choices(slots: Sequence[Slot], ops: Sequence[str] | None = None) -> list[OpChoice]:
    """Every registered operator at each hyperparameter setting of its registry examples that is
    valid for every slot; ``standard`` (the model's own convolution) first."""
    names = list(ops) if ops is not None else list_ops()
    out = [OpChoice.make("standard")]
    for name in names:
        for example in get_op(name).examples:
            op = OpChoice.make(name, example)
            if op not in out and all(slot_op_error(op, s) is None for s in slots) and not _plain(op, slots):
                out.append(op)
    return out


def space_from_model(factory: str | Callable[..., Any], input_shape: Sequence[int] | str, *,
                     kwargs: dict[str, Any] | None = None, name: str | None = None, description: str = "",
                     include_first: bool = False, shared: str = "slot", ops: Sequence[str] | None = None,
                     init_from: str | None = None, base_dir: str = "") -> ModelSpace:
    """A :class:`ModelSpace` from a model factory (``"MODULE:FACTORY"``, a dotted module or a
    ``.py`` path; or the callable itself when it is importable by its module and name).

    The model is built twice (a factory that builds another structure the second time is
    refused) and run once on a random ``input_shape`` image. ``shared``: ``"slot"`` makes a
    convolution module called more than once one slot (its choice applies at every call);
    ``"refuse"`` refuses such a model. ``ops``: the operator families to offer (default: all).
    """
    if shared not in ("slot", "refuse"):
        raise ModelUsageError(f"shared must be 'slot' or 'refuse', got {shared!r}")
    shape = parse_input(input_shape) if isinstance(input_shape, str) else tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise ModelUsageError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    shape = parse_input("x".join(map(str, shape)))
    ref = factory if isinstance(factory, str) else _ref_of(factory)
    fn = load_factory(ref, base_dir=base_dir or None)
    ref = _portable(ref.rpartition(":")[0], base_dir) + ":" + ref.rpartition(":")[2]
    init_from = _portable(init_from, base_dir) if init_from else None
    kwargs = dict(kwargs or {})
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError):
        raise ModelUsageError("--kwargs must be JSON data (numbers, strings, lists, mappings)") from None
    model = call_factory(fn, kwargs, ref)
    tr = trace_model(model, shape, include_first=include_first, shared=shared)
    again = fingerprint(call_factory(fn, kwargs, ref))
    if again != tr.fingerprint:
        raise ModelError(f"{ref} builds a different structure on a second call (fingerprint {tr.fingerprint}, "
                         f"then {again}); a space needs the same model every time")
    slots = [Slot(c.name, c.in_channels, c.out_channels, c.kernel_size, c.stride, c.bias, c.calls, c.aliases)
             for c in tr.convs if c.replaceable]
    fixed = [(c.name, c.reason) for c in tr.convs if not c.replaceable]
    if not slots:
        listed = "; ".join(f"{n}: {r}" for n, r in fixed[:6]) or "the model has no nn.Conv2d"
        raise ModelError(f"{ref} has no convolution a registered operator can replace ({listed})")
    stages: list[list[Slot]] = []
    last = None
    for s in slots:
        h, w = s.calls[0]
        size = (out_size(h, s.kernel_size, s.stride), out_size(w, s.kernel_size, s.stride))
        if size != last:
            stages.append([])
            last = size
        stages[-1].append(s)
    stage_data = []
    for i, group in enumerate(stages):
        h, w = group[0].calls[0]
        px = out_size(h, group[0].kernel_size, group[0].stride)
        stage_data.append({"name": f"s{i}-{px}px", "convs": [s.name for s in group],
                           "choices": choices_data(default_choices(group, ops))})
    model_data: dict[str, Any] = {"factory": ref, "kwargs": kwargs, "input": list(shape),
                                  "num_classes": tr.output_shape[0], "fingerprint": tr.fingerprint}
    if init_from:
        model_data["init_from"] = init_from
    if include_first:
        model_data["include_first"] = True
    data = {"kind": KIND, "name": name or ref.rpartition(":")[2].replace("_", "-"),
            "description": description or f"{ref} at {'x'.join(map(str, shape))}: its k x k convolutions searched",
            "model": model_data, "slots": [s.to_data() for s in slots],
            "fixed": [{"name": n, "reason": r} for n, r in fixed], "stages": stage_data}
    return parse_model_space(data, source=f"space from {ref}", base_dir=base_dir)


def _portable(path: str, base_dir: str) -> str:
    """A relative file path the user gave (from the working directory) as the space file will
    find it: relative to the file's own directory."""
    p = Path(path)
    if not base_dir or p.is_absolute() or not (path.endswith(".py") or "/" in path or p.suffix) or not p.is_file():
        return path
    return os.path.relpath(p.resolve(), Path(base_dir).resolve())


def _ref_of(factory: Callable[..., Any]) -> str:
    module, qual = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or module.startswith("nasconv_user_") or "." in qual or "<" in qual:
        raise ModelUsageError("a factory passed as a callable must be importable by module and name "
                              "(a top-level function of an importable module); pass 'MODULE:FACTORY' instead")
    return f"{module}:{qual}"


def space_yaml(space: ModelSpace) -> str:
    """The space as an editable YAML file: each slot, fixed convolution and stage on its own lines."""
    data = space.to_data()
    head = [
        f"# A search space made from {space.factory} by `nasconv space from-model`.",
        "# slots: the k x k convolutions a registered operator can replace (in, out, kernel, stride, input size",
        "#   of each call); fixed: every other convolution, with the reason. Both are what the model was when",
        "#   the space was made: a model that changed (fingerprint) is refused with what changed.",
        "# stages: edit freely. `convs` takes module names or globs (features.1*); a slot in no stage keeps its",
        "#   own convolution. `choices` as in any space file (standard = the model's own convolution).",
    ]
    body = [yaml.safe_dump({k: data[k] for k in ("kind", "name", "description")}, default_flow_style=False,
                           sort_keys=False, width=10_000).rstrip(),
            yaml.safe_dump({"model": data["model"]}, default_flow_style=None, sort_keys=False, width=10_000).rstrip()]
    for key in ("slots", "fixed"):
        body.append(f"{key}:" + ("" if data[key] else " []"))
        body += ["  - " + _flow(item) for item in data[key]]
    body.append("stages:")
    for st in data["stages"]:
        body.append(f"  - name: {yaml.safe_dump(st['name']).strip().removesuffix('...').strip()}")
        body.append("    convs: " + yaml.safe_dump(st["convs"], default_flow_style=True, width=10_000).strip())
        body.append("    choices:")
        body += ["      - " + _flow(c) for c in st["choices"]]
    return "\n".join(head + body) + "\n"


def _flow(value: Any) -> str:
    """One YAML value on one line (``{op: gc, groups: [2, 4]}``; a plain scalar without ``...``)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text.removesuffix("...").strip()


def write_space(space: ModelSpace, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.write_text(space_yaml(space))
    except OSError as exc:
        raise ModelUsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
