"""A search space made from a user's own model (``kind: model``): its replaceable convolutions
(slots) grouped into stages, each stage with the operator choices valid for all of its slots,
validated on load with key-path errors. Making one from a model is :mod:`.generate`; building a
candidate :mod:`.build`; its exact cost :mod:`.cost`."""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from nasconv.arch import OpChoice, canonical_value
from nasconv.custom.choices import parse_op_choices
from nasconv.errors import HyperparameterError, SpaceError
from nasconv.ops import op_cost, validate_op

KIND = "model"
TOP_KEYS = {"kind", "name", "description", "model", "slots", "fixed", "stages"}
MODEL_KEYS = {"factory", "kwargs", "input", "num_classes", "fingerprint", "init_from", "init_sha256", "include_first",
              "new_head"}
SLOT_KEYS = {"name", "in", "out", "kernel", "stride", "bias", "calls", "aliases"}
STAGE_KEYS = {"name", "convs", "choices"}
#: bounds past which a file is corrupt rather than a real network's
MAX_SLOTS = 10_000
MAX_CALLS = 1_000
MAX_SIZE = 65_536


@dataclass(frozen=True)
class Slot:
    """A replaceable ``k x k`` convolution, as the model's trace found it."""

    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    bias: bool
    calls: tuple[tuple[int, int], ...]
    aliases: tuple[str, ...] = ()

    def to_data(self) -> dict[str, Any]:
        d = {"name": self.name, "in": self.in_channels, "out": self.out_channels, "kernel": self.kernel_size,
             "stride": self.stride, "bias": self.bias, "calls": [list(c) for c in self.calls]}
        if self.aliases:
            d["aliases"] = list(self.aliases)
        return d

    def describe(self) -> str:
        at = ", ".join(f"{h}x{w}" for h, w in self.calls)
        return (f"{self.in_channels}->{self.out_channels} {self.kernel_size}x{self.kernel_size}/{self.stride} "
                f"at {at}")


@dataclass(frozen=True)
class ModelStage:
    """Slots that take the same operator choice. Depth and width are the model's own (one level
    each), so that the search treats a stage as it treats a ResNet stage."""

    name: str
    patterns: tuple[str, ...]
    slots: tuple[str, ...]
    ops: tuple[OpChoice, ...]
    depths: tuple[int, ...] = (1,)
    widths: tuple[int, ...] = (1,)
    depth_default: int = 1
    width_default: int = 1

    @property
    def size(self) -> int:
        return len(self.ops)


@dataclass(frozen=True)
class ModelSpace:
    """A user's model as a search space; the same interface as :class:`~nasconv.spaces.SearchSpace`."""

    name: str
    description: str
    factory: str
    kwargs_json: str
    input_shape: tuple[int, int, int]
    num_classes: int
    fingerprint: str
    slots: tuple[Slot, ...]
    fixed: tuple[tuple[str, str], ...]
    stages: tuple[ModelStage, ...]
    init_from: str | None = None
    include_first: bool = False
    source: str = ""
    #: the directory a relative factory or weights path is also looked up in (the file's own)
    base_dir: str = ""
    #: sha256 of the ``init_from`` file (:mod:`.weights`): the weights' identity, not only their path
    init_sha256: str | None = None
    #: the factory was given the data's class count (:mod:`.classes`): the classifier starts fresh
    new_head: bool = False
    #: the class count ``factory(**kwargs)`` outputs (what ``fingerprint`` describes); a space
    #: made by ``dataclasses.replace(space, num_classes=K)`` differs from it until __post_init__
    #: gives the factory ``num_classes=K`` (or refuses in one line)
    model_classes: int = field(default=0, compare=False, repr=False)
    #: where a dotted factory module was imported from on the driver (a worker imports it from there)
    module_dir: str = field(default="", compare=False, repr=False)

    kind = KIND
    stem = "model"  # what code written for ResNet spaces reads: no stem to shrink

    def __post_init__(self) -> None:
        if self.model_classes and self.model_classes != self.num_classes:  # the data's head (.classes)
            from nasconv.custom.classes import head_for

            kwargs_json, fp = head_for(self, self.num_classes)
            object.__setattr__(self, "kwargs_json", kwargs_json)
            object.__setattr__(self, "fingerprint", fp)
            object.__setattr__(self, "new_head", True)
        object.__setattr__(self, "model_classes", self.num_classes)

    def verify_files(self) -> None:
        """Refuse, in one line, weights that changed since the space was read (a resumed study)."""
        if self.init_from:
            from nasconv.custom.weights import check_weights

            check_weights(self.init_from, self.init_sha256, self.base_dir, f"space {self.name!r}: ")

    @property
    def kwargs(self) -> dict[str, Any]:
        return json.loads(self.kwargs_json)

    @property
    def resolution(self) -> int:
        return self.input_shape[1]

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def slot_by_name(self) -> dict[str, Slot]:
        return {s.name: s for s in self.slots}

    # --- what a search reads ----------------------------------------------------------------
    @property
    def proxy(self) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted(self.proxy_settings.items()))

    @property
    def proxy_settings(self) -> dict[str, Any]:
        # The user's network is trained whole, at its own input size: nasconv cannot shrink it.
        return {"max_depth": None, "width_factor": 1.0, "small_stem": False, "resolution": self.resolution}

    def proxy_settings_for(self, device: str) -> dict[str, Any]:
        return dict(self.proxy_settings)

    @functools.cached_property
    def content_hash(self) -> str:
        """16 hex digits over what makes the candidates: the factory, its arguments, the input,
        the model's fingerprint, the starting weights, the slots and each stage's choices."""
        content = {"kind": KIND, "factory": self.factory, "kwargs": self.kwargs, "input": list(self.input_shape),
                   "num_classes": self.num_classes, "fingerprint": self.fingerprint, "init_from": self.init_from,
                   **({"init_sha256": self.init_sha256} if self.init_from else {}),
                   **({"new_head": True} if self.new_head else {}),
                   "slots": [s.to_data() for s in self.slots],
                   "stages": [{"slots": list(st.slots), "ops": [[o.name, [list(kv) for kv in o.hyper]]
                                                                for o in st.ops]} for st in self.stages]}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def size(self) -> int:
        return math.prod(st.size for st in self.stages)

    def make_arch(self, choices: Iterable[Any]) -> Any:
        """A candidate from one choice per stage: an :class:`OpChoice`, or ``(op, depth, width)``
        as the search hands a ResNet space."""
        from nasconv.custom.arch import ModelArch

        ops = tuple(c[0] if isinstance(c, tuple) else c for c in choices)
        if len(ops) != len(self.stages):
            raise SpaceError(f"space {self.name!r} has {len(self.stages)} stages, got {len(ops)} choices")
        return ModelArch(self, ops)

    def baseline(self) -> Any:
        """The user's model as it is (every slot keeps its own convolution)."""
        return self.make_arch(OpChoice.make("standard") for _ in self.stages)

    def sample(self, rng: random.Random) -> Any:
        return self.make_arch(rng.choice(st.ops) for st in self.stages)

    def check_arch(self, arch: Any) -> None:
        if getattr(arch, "kind", None) != KIND:
            raise SpaceError(f"architecture does not belong to space {self.name!r}: it is not a model candidate")
        if arch.space_hash != self.content_hash:
            raise SpaceError(f"architecture does not belong to space {self.name!r}: it was made for space "
                             f"{arch.space!r} with content {arch.space_hash}, this one has {self.content_hash}")
        for i, (op, st) in enumerate(zip(arch.ops, self.stages)):
            if op not in st.ops:
                raise SpaceError(f"architecture does not belong to space {self.name!r}: stages[{i}].op "
                                 f"{op.label()} is not a choice")

    def cost_bounds(self) -> dict[str, int]:
        from nasconv.custom.cost import cost_bounds

        return cost_bounds(self)

    def summary(self) -> dict[str, Any]:
        from nasconv.custom.cost import model_cost

        base = model_cost(self.baseline())
        return {
            "name": self.name, "kind": KIND, "description": self.description, "source": self.source,
            "factory": self.factory, "kwargs": self.kwargs, "input": list(self.input_shape),
            "resolution": self.resolution, "in_channels": self.in_channels, "num_classes": self.num_classes,
            "fingerprint": self.fingerprint, "init_from": self.init_from,
            "stem": {"type": "model", "width": 0},
            "stages": [{"name": st.name, "block": "model", "stride": 1, "depths": [1], "widths": [1],
                        "convs": list(st.slots), "choices": [o.label() for o in st.ops]} for st in self.stages],
            "unsearched": [s.name for s in self.slots if not any(s.name in st.slots for st in self.stages)],
            "fixed": [{"name": n, "reason": r} for n, r in self.fixed],
            "architectures": self.size, "proxy": self.proxy_settings, "proxy_gpu": self.proxy_settings,
            **self.cost_bounds(), "baseline": {"params": base.params, "macs": base.macs},
        }

    def to_data(self) -> dict[str, Any]:
        """The space file's content (what :func:`parse_model_space` reads back to an equal space)."""
        model: dict[str, Any] = {"factory": self.factory, "kwargs": self.kwargs, "input": list(self.input_shape),
                                 "num_classes": self.num_classes, "fingerprint": self.fingerprint}
        if self.init_from:
            model["init_from"] = self.init_from
            model["init_sha256"] = self.init_sha256
        if self.new_head:
            model["new_head"] = True
        if self.include_first:
            model["include_first"] = True
        return {"kind": KIND, "name": self.name, "description": self.description, "model": model,
                "slots": [s.to_data() for s in self.slots],
                "fixed": [{"name": n, "reason": r} for n, r in self.fixed],
                "stages": [{"name": st.name, "convs": list(st.patterns), "choices": choices_data(list(st.ops))}
                           for st in self.stages]}


def slot_op_error(op: OpChoice, slot: Slot) -> str | None:
    """Why ``op`` cannot replace ``slot`` (at every one of its calls), or None."""
    try:
        validate_op(op.name, slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride, **op.kwargs)
        for h, w in slot.calls:
            op_cost(op.name, slot.in_channels, slot.out_channels, slot.kernel_size, h, w, slot.stride, **op.kwargs)
    except HyperparameterError as exc:
        return str(exc)
    return None


def choices_data(ops: list[OpChoice]) -> list[Any]:
    """Readable choices: one entry per operator, a list where one hyperparameter varies."""
    out: list[Any] = []
    by_name: dict[str, list[OpChoice]] = {}
    for op in ops:
        by_name.setdefault(op.name, []).append(op)
    for name, group in by_name.items():
        keys = {k for op in group for k, _ in op.hyper}
        if len(group) == 1 and not keys:
            out.append(name)
        elif len(keys) == 1 and all(len(op.hyper) == 1 for op in group):
            (k,) = keys
            out.append({"op": name, k: [op.kwargs[k] for op in group]})
        else:
            out.extend(op.to_dict() for op in group)
    return out


# --- parsing ----------------------------------------------------------------------------------


class _Where:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, msg: str) -> SpaceError:
        return SpaceError(f"{self.source}: {path}: {msg}")


def _get(d: Mapping[str, Any], key: str, kind: type | tuple, where: _Where, path: str, default: Any = ...) -> Any:
    full = f"{path}.{key}" if path else key
    if key not in d:
        if default is ...:
            raise where.error(full, "missing")
        return default
    v = d[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise where.error(full, f"must be {name}, got {v!r}")
    return v


def _pos_int(v: Any, path: str, where: _Where, most: int = MAX_SIZE) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= most:
        raise where.error(path, f"must be an integer in [1, {most:,}], got {v!r}")
    return v


def _keys(d: Mapping[str, Any], accepted: set[str], where: _Where, path: str) -> None:
    for key in d:
        if key not in accepted:
            full = f"{path}.{key}" if path else str(key)
            raise where.error(full, f"unknown key; accepted: {', '.join(sorted(accepted))}")


def parse_model_space(data: Any, *, source: str = "<space>", base_dir: str = "", module_dir: str = "") -> ModelSpace:
    """Check a ``kind: model`` space file's data; every error names its key path."""
    where = _Where(source)
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: a space file must be a mapping")
    _keys(data, TOP_KEYS, where, "")
    name = _get(data, "name", str, where, "")
    model = _get(data, "model", dict, where, "")
    _keys(model, MODEL_KEYS, where, "model")
    factory = _get(model, "factory", str, where, "model")
    kwargs = _get(model, "kwargs", dict, where, "model", {}) or {}
    try:
        kwargs_json = json.dumps(kwargs, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        raise where.error("model.kwargs", "must be JSON data (numbers, strings, lists, mappings)") from None
    shape = _get(model, "input", list, where, "model")
    if len(shape) != 3:
        raise where.error("model.input", f"must be [channels, height, width], got {shape!r}")
    input_shape = tuple(_pos_int(v, f"model.input[{i}]", where) for i, v in enumerate(shape))
    num_classes = _pos_int(_get(model, "num_classes", int, where, "model"), "model.num_classes", where, 10_000_000)
    fp = _get(model, "fingerprint", str, where, "model")
    init_from = _get(model, "init_from", (str, type(None)), where, "model", None)
    include_first = _get(model, "include_first", bool, where, "model", False)
    new_head = _get(model, "new_head", bool, where, "model", False)
    init_sha = _get(model, "init_sha256", (str, type(None)), where, "model", None)
    if init_from:  # the weights' content, read now: a file that changed is refused with both digests
        from nasconv.custom.weights import check_weights

        init_sha = check_weights(init_from, init_sha, base_dir, f"{source}: model.init_from: ")
    elif init_sha:
        raise where.error("model.init_sha256", "given without init_from")

    slots_data = _get(data, "slots", list, where, "")
    if len(slots_data) > MAX_SLOTS:
        raise where.error("slots", f"{len(slots_data):,} slots, more than {MAX_SLOTS:,}")
    slots = [_parse_slot(sd, f"slots[{i}]", where) for i, sd in enumerate(slots_data)]
    names = [s.name for s in slots]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise where.error("slots", f"{dup!r} is listed twice")
    fixed = []
    for i, fd in enumerate(_get(data, "fixed", list, where, "", []) or []):
        if not isinstance(fd, dict):
            raise where.error(f"fixed[{i}]", "must be a mapping with name and reason")
        fixed.append((_get(fd, "name", str, where, f"fixed[{i}]"), str(fd.get("reason", ""))))
    stages_data = _get(data, "stages", list, where, "")
    if not stages_data:
        raise where.error("stages", "at least one stage is needed")
    stages: list[ModelStage] = []
    owner: dict[str, int] = {}
    for i, sd in enumerate(stages_data):
        p = f"stages[{i}]"
        if not isinstance(sd, dict):
            raise where.error(p, "must be a mapping with name, convs, choices")
        _keys(sd, STAGE_KEYS, where, p)
        st_name = str(_get(sd, "name", (str, int), where, p, f"stage{i}"))
        patterns = _get(sd, "convs", list, where, p)
        if not patterns:
            raise where.error(f"{p}.convs", "at least one convolution (a module name or glob) is needed")
        matched: list[str] = []
        for j, pat in enumerate(patterns):
            if not isinstance(pat, str):
                raise where.error(f"{p}.convs[{j}]", f"must be a module name or glob, got {pat!r}")
            hits = [s.name for s in slots if fnmatch.fnmatchcase(s.name, pat)
                    or any(fnmatch.fnmatchcase(a, pat) for a in s.aliases)]
            if not hits:
                why = next((f"{n} is fixed: {r}" for n, r in fixed if fnmatch.fnmatchcase(n, pat)), None)
                raise where.error(f"{p}.convs[{j}]", f"{pat!r} matches no replaceable convolution"
                                                     + (f" ({why})" if why else ""))
            for h in hits:
                if h in owner and owner[h] != i:
                    raise where.error(f"{p}.convs[{j}]", f"{h} is already in stages[{owner[h]}]")
                owner[h] = i
                if h not in matched:
                    matched.append(h)
        ops = parse_op_choices(_get(sd, "choices", list, where, p), f"{p}.choices", where)
        by_name = {s.name: s for s in slots}
        for j, op in enumerate(ops):
            for h in matched:
                why = slot_op_error(op, by_name[h])
                if why:
                    raise where.error(f"{p}.choices[{_choice_index(sd['choices'], op)}]",
                                      f"{op.label()} cannot replace {h} ({by_name[h].describe()}): {why}")
        stages.append(ModelStage(st_name, tuple(patterns), tuple(matched), ops))
    return ModelSpace(name, str(data.get("description", "")), factory, kwargs_json, input_shape,  # type: ignore[arg-type]
                      num_classes, fp, tuple(slots), tuple(fixed), tuple(stages), init_from, include_first,
                      source, base_dir, init_sha, new_head, module_dir=module_dir)


def _parse_slot(sd: Any, p: str, where: _Where) -> Slot:
    if not isinstance(sd, dict):
        raise where.error(p, "must be a mapping")
    _keys(sd, SLOT_KEYS, where, p)
    calls = _get(sd, "calls", list, where, p)
    if not calls or len(calls) > MAX_CALLS:
        raise where.error(f"{p}.calls", f"must list 1 to {MAX_CALLS} input sizes [height, width]")
    parsed = []
    for j, c in enumerate(calls):
        if not isinstance(c, list) or len(c) != 2:
            raise where.error(f"{p}.calls[{j}]", f"must be [height, width], got {c!r}")
        parsed.append((_pos_int(c[0], f"{p}.calls[{j}][0]", where), _pos_int(c[1], f"{p}.calls[{j}][1]", where)))
    kernel = _pos_int(_get(sd, "kernel", int, where, p), f"{p}.kernel", where, 63)
    if kernel % 2 == 0 or kernel == 1:
        raise where.error(f"{p}.kernel", f"a slot's kernel is odd and > 1, got {kernel}")
    aliases = _get(sd, "aliases", list, where, p, [])
    return Slot(_get(sd, "name", str, where, p), _pos_int(_get(sd, "in", int, where, p), f"{p}.in", where),
                _pos_int(_get(sd, "out", int, where, p), f"{p}.out", where), kernel,
                _pos_int(_get(sd, "stride", int, where, p), f"{p}.stride", where, 64),
                _get(sd, "bias", bool, where, p, False), tuple(parsed), tuple(str(a) for a in aliases))


def _choice_index(choices_data: list, op: OpChoice) -> int:
    for j, c in enumerate(choices_data):
        if (c if isinstance(c, str) else c.get("op") if isinstance(c, dict) else None) == op.name:
            fixed = {k: v for k, v in c.items() if k != "op" and not isinstance(v, list)} if isinstance(c, dict) else {}
            if any(canonical_value(v) != op.kwargs.get(k) for k, v in fixed.items()):
                continue
            return j
    return 0
