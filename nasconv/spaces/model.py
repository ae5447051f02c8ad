"""A search space: the backbone (stem, block type, stages) and, per stage, the operator choices
with their hyperparameter grids, validated by :func:`parse_space`, with exact cost bounds and
sampling. Reading files is :mod:`nasconv.spaces.files`."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from nasconv.arch import BLOCKS, STEMS, ArchSpec, OpChoice, StageSpec
from nasconv.cost import block_out_size, estimate_cost, head_cost, stage_cost, stem_cost, stem_size
from nasconv.custom.choices import MAX_OP_GRID as MAX_OP_GRID  # re-exported by nasconv.spaces
from nasconv.custom.choices import parse_op_choices
from nasconv.errors import HyperparameterError, SpaceError
from nasconv.ops import validate_op

# Bounds of what a space file may ask for: beyond them a network cannot be built or evaluated
# on any machine nasconv targets, and a typo (an extra zero or three) should fail at load time,
# not as a terabyte allocation in a worker.
MAX_RESOLUTION = 4096
MAX_IN_CHANNELS = 1024
MAX_CLASSES = 100_000
MAX_WIDTH = 8192
MAX_DEPTH = 100
MAX_STAGES = 64
MAX_EXPANSION = 16
#: (operator, depth, width) combinations of one stage times its input widths: the exact cost
#: bounds visit each once, so this bounds the time ``space show`` and a search's start take
MAX_STAGE_WORK = 50_000


@dataclass(frozen=True)
class StageSpace:
    block: str
    stride: int
    expansion: int
    depths: tuple[int, ...]
    depth_default: int
    widths: tuple[int, ...]
    width_default: int
    ops: tuple[OpChoice, ...]

    @property
    def size(self) -> int:
        return len(self.depths) * len(self.widths) * len(self.ops)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    resolution: int
    in_channels: int
    num_classes: int
    stem: str
    stem_width: int
    stages: tuple[StageSpace, ...]
    source: str = ""
    #: how the brief-training proxy reduces this space's candidates (TrainConfig fields:
    #: max_depth, width_factor, small_stem); a space of small networks trains them whole
    proxy: tuple[tuple[str, Any], ...] = ()
    #: what the proxy trains on a CUDA GPU instead (TrainConfig fields: the reduction keys plus
    #: train_images, val_images, epochs, batch_size, resolution), over :attr:`proxy`
    proxy_gpu: tuple[tuple[str, Any], ...] = ()

    @property
    def proxy_settings(self) -> dict[str, Any]:
        return dict(self.proxy)

    def proxy_settings_for(self, device: str) -> dict[str, Any]:
        """The proxy's training settings on ``device`` (``cpu``, ``cuda`` or ``cuda:N``): on a GPU,
        ``proxy_gpu`` over ``proxy`` (a GPU trains the whole candidate longer in about a minute)."""
        if device.startswith("cuda") and self.proxy_gpu:
            return {**dict(self.proxy), **dict(self.proxy_gpu)}
        return dict(self.proxy)

    @functools.cached_property
    def content_hash(self) -> str:
        """16 hex digits of the canonical JSON of what makes the space's architectures: input,
        stem and every stage's grids and operator choices, in order (the order numbers Optuna's
        categorical choices). Not the name, description, source file or proxy settings: two files
        that parse to the same architectures have the same hash, and one that reuses a name with
        other choices has another."""
        content = {
            "resolution": self.resolution, "in_channels": self.in_channels, "num_classes": self.num_classes,
            "stem": self.stem, "stem_width": self.stem_width,
            "stages": [{"block": st.block, "stride": st.stride, "expansion": st.expansion,
                        "depths": list(st.depths), "depth_default": st.depth_default,
                        "widths": list(st.widths), "width_default": st.width_default,
                        "ops": [[op.name, [list(kv) for kv in op.hyper]] for op in st.ops]}
                       for st in self.stages],
        }
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # --- architectures --------------------------------------------------------------------
    def make_arch(self, choices: Iterable[tuple[OpChoice, int, int]]) -> ArchSpec:
        """Architecture from one (op, depth, width) per stage."""
        stages = tuple(
            StageSpec(block=st.block, depth=d, width=w, stride=st.stride, op=op, expansion=st.expansion)
            for st, (op, d, w) in zip(self.stages, choices, strict=True)
        )
        return ArchSpec(space=self.name, resolution=self.resolution, in_channels=self.in_channels,
                        num_classes=self.num_classes, stem=self.stem, stem_width=self.stem_width, stages=stages)

    def baseline(self) -> ArchSpec:
        """Plain convolution everywhere, default depth and width."""
        std = OpChoice.make("standard")
        return self.make_arch((std, st.depth_default, st.width_default) for st in self.stages)

    def sample(self, rng: random.Random) -> ArchSpec:
        return self.make_arch((rng.choice(st.ops), rng.choice(st.depths), rng.choice(st.widths))
                              for st in self.stages)

    @property
    def size(self) -> int:
        """Number of distinct architectures."""
        return math.prod(st.size for st in self.stages)

    def check_arch(self, arch: ArchSpec) -> None:
        """Raise :class:`SpaceError` unless ``arch`` is one of this space's architectures."""
        def bad(what: str) -> SpaceError:
            return SpaceError(f"architecture does not belong to space {self.name!r}: {what}")

        if arch.space != self.name:
            raise bad(f"it names space {arch.space!r}")
        for key in ("resolution", "in_channels", "num_classes", "stem", "stem_width"):
            if getattr(arch, key) != getattr(self, key):
                raise bad(f"{key} is {getattr(arch, key)!r}, the space has {getattr(self, key)!r}")
        if len(arch.stages) != len(self.stages):
            raise bad(f"it has {len(arch.stages)} stages, the space {len(self.stages)}")
        for i, (s, st) in enumerate(zip(arch.stages, self.stages)):
            if (s.block, s.stride, s.expansion) != (st.block, st.stride, st.expansion):
                raise bad(f"stages[{i}] is a {s.block} stage of stride {s.stride}, the space's is "
                          f"{st.block} of stride {st.stride}")
            if s.depth not in st.depths:
                raise bad(f"stages[{i}].depth {s.depth} is not one of {list(st.depths)}")
            if s.width not in st.widths:
                raise bad(f"stages[{i}].width {s.width} is not one of {list(st.widths)}")
            if s.op not in st.ops:
                labels = ", ".join(o.label() for o in st.ops[:12]) + (", ..." if len(st.ops) > 12 else "")
                raise bad(f"stages[{i}].op {s.op.label()} is not a choice ({labels})")

    # --- cost bounds ----------------------------------------------------------------------
    def cost_bounds(self) -> dict[str, int]:
        """Exact min and max of params and MACs over every architecture of the space."""
        return _cost_bounds(self)

    def summary(self) -> dict[str, Any]:
        base = estimate_cost(self.baseline())
        return {
            "name": self.name, "description": self.description, "source": self.source,
            "resolution": self.resolution, "in_channels": self.in_channels, "num_classes": self.num_classes,
            "stem": {"type": self.stem, "width": self.stem_width},
            "stages": [
                {"block": st.block, "stride": st.stride, "depths": list(st.depths), "widths": list(st.widths),
                 "choices": [o.label() for o in st.ops]}
                for st in self.stages
            ],
            "architectures": self.size,
            "proxy": self.proxy_settings,
            "proxy_gpu": self.proxy_settings_for("cuda"),
            **self.cost_bounds(),
            "baseline": {"params": base.params, "macs": base.macs},
        }


@functools.lru_cache(maxsize=64)
def _cost_bounds(space: SearchSpace) -> dict[str, int]:
    # Dynamic programming over stages; the state is the stage's output width, which is all that
    # couples one stage's cost to the next one's (spatial sizes do not depend on choices).
    res = space.resolution
    stem = stem_cost(space.stem, space.in_channels, space.stem_width, res)
    h, w = stem_size(space.stem, res, res)
    out: dict[str, int] = {}
    for field_ in ("params", "macs"):
        best: dict[int, tuple[int, int]] = {space.stem_width: (getattr(stem, field_),) * 2}
        hh, ww = h, w
        for st in space.stages:
            nxt: dict[int, tuple[int, int]] = {}
            for c_in, (lo, hi) in best.items():
                for op, depth, width in itertools.product(st.ops, st.depths, st.widths):
                    cost, h2, w2 = stage_cost(st.block, st.stride, st.expansion, op, depth, width, c_in, hh, ww)
                    v = getattr(cost, field_)
                    c_out = width * st.expansion
                    old = nxt.get(c_out, (math.inf, -math.inf))
                    nxt[c_out] = (min(old[0], lo + v), max(old[1], hi + v))
            best = nxt
            hh, ww = h2, w2
        lo = min(b[0] + getattr(head_cost(c, space.num_classes), field_) for c, b in best.items())
        hi = max(b[1] + getattr(head_cost(c, space.num_classes), field_) for c, b in best.items())
        out[f"min_{field_}"], out[f"max_{field_}"] = int(lo), int(hi)
    return out


class _Path:
    """Builds key paths for error messages: ``stages[2].choices[4].blocks``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, msg: str) -> SpaceError:
        return SpaceError(f"{self.source}: {path}: {msg}")


def _req(data: Mapping[str, Any], key: str, kind: type | tuple, where: _Path, path: str = "") -> Any:
    full = f"{path}.{key}" if path else key
    if key not in data:
        raise where.error(full, "missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise where.error(full, f"must be {name}, got {value!r}")
    return value


TOP_KEYS = {"name", "description", "resolution", "in_channels", "num_classes", "stem", "block", "expansion",
            "choices", "stages", "proxy", "proxy_gpu"}
PROXY_KEYS = {"max_depth": (int, type(None)), "width_factor": (float, int), "small_stem": (bool,)}
#: a GPU proxy also sets how much it trains (positive ints; val_images None: the whole held-out split)
GPU_PROXY_KEYS = {**PROXY_KEYS, "train_images": (int,), "val_images": (int, type(None)), "epochs": (int,),
                  "batch_size": (int,), "resolution": (int,)}
TRAINING_AMOUNT_KEYS = set(GPU_PROXY_KEYS) - set(PROXY_KEYS)
STAGE_KEYS = {"depth", "width", "stride", "choices"}


def parse_space(data: Any, *, source: str = "<space>") -> SearchSpace:
    where = _Path(source)
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: a space file must be a mapping")
    for key in data:
        if key not in TOP_KEYS:
            raise where.error(str(key), f"unknown key; accepted: {', '.join(sorted(TOP_KEYS))}")
    name = _req(data, "name", str, where)
    resolution = _bounded(_req(data, "resolution", int, where), "resolution", where, MAX_RESOLUTION)
    in_channels = _bounded(_req(data, "in_channels", int, where), "in_channels", where, MAX_IN_CHANNELS)
    num_classes = _bounded(_req(data, "num_classes", int, where), "num_classes", where, MAX_CLASSES)
    stem = _req(data, "stem", dict, where)
    stem_type = _req(stem, "type", str, where, "stem")
    stem_width = _bounded(_req(stem, "width", int, where, "stem"), "stem.width", where, MAX_WIDTH)
    if stem_type not in STEMS:
        raise where.error("stem.type", f"must be one of {', '.join(STEMS)}, got {stem_type!r}")
    block = _req(data, "block", str, where)
    if block not in BLOCKS:
        raise where.error("block", f"must be one of {', '.join(BLOCKS)}, got {block!r}")
    expansion = data.get("expansion", 4 if block == "bottleneck" else 1)
    if not isinstance(expansion, int) or isinstance(expansion, bool):
        raise where.error("expansion", f"must be int, got {expansion!r}")
    _bounded(expansion, "expansion", where, MAX_EXPANSION)
    if block == "basic" and expansion != 1:
        raise where.error("expansion", "basic blocks have expansion 1")
    default_choices = data.get("choices")
    stages_data = _req(data, "stages", list, where)
    if not stages_data:
        raise where.error("stages", "at least one stage is needed")
    if len(stages_data) > MAX_STAGES:
        raise where.error("stages", f"{len(stages_data)} stages, more than {MAX_STAGES}")

    stages: list[StageSpace] = []
    prev_widths = (stem_width,)
    h, _ = stem_size(stem_type, resolution, resolution)
    for i, sd in enumerate(stages_data):
        p = f"stages[{i}]"
        if not isinstance(sd, dict):
            raise where.error(p, "must be a mapping with depth, width, stride")
        for key in sd:
            if key not in STAGE_KEYS:
                raise where.error(f"{p}.{key}", f"unknown key; accepted: {', '.join(sorted(STAGE_KEYS))}")
        depths, d_default = _grid(sd.get("depth"), f"{p}.depth", where, multipliers=False, maximum=MAX_DEPTH)
        widths, w_default = _grid(sd.get("width"), f"{p}.width", where, multipliers=True, maximum=MAX_WIDTH)
        stride = _req(sd, "stride", int, where, p)
        if stride not in (1, 2):
            raise where.error(f"{p}.stride", f"must be 1 or 2, got {stride}")
        choices_data = sd.get("choices", default_choices)
        choices_path = f"{p}.choices"
        if choices_data is None:
            raise where.error(choices_path, "no operator choices (give `choices` at the top or per stage)")
        ops = parse_op_choices(choices_data, choices_path, where, locate_value_errors=False)
        work = len(ops) * len(depths) * len(widths) * len(prev_widths)
        if work > MAX_STAGE_WORK:
            raise where.error(p, f"{len(ops)} operator choices x {len(depths)} depths x {len(widths)} widths "
                                 f"x {len(prev_widths)} input widths is {work:,} combinations, more than the "
                                 f"{MAX_STAGE_WORK:,} whose exact cost bounds nasconv computes; split the grids")
        # Every operator choice must fit every convolution it replaces in this stage, for every
        # width choice: caught here, not at build time.
        shapes = set()
        for w in widths:
            if block == "bottleneck":
                shapes |= {(w, w, stride), (w, w, 1)}
            else:
                shapes |= {(c, w, stride) for c in prev_widths} | {(w, w, 1)}
        for j, op in enumerate(ops):
            for c_in, c_out, s in sorted(shapes):
                try:
                    validate_op(op.name, c_in, c_out, 3, s, **op.kwargs)
                except HyperparameterError as exc:
                    key = getattr(exc, "key", None)
                    idx = _choice_index(choices_data, op)
                    path = f"{choices_path}[{idx}]" + (f".{key}" if key else "")
                    raise where.error(path, f"{exc} (in a {c_in}->{c_out} stride-{s} conv)") from None
        stages.append(StageSpace(block, stride, expansion, depths, d_default, widths, w_default, ops))
        prev_widths = tuple(w * expansion for w in widths)
        h = block_out_size(h, stride)
        if h < 1:
            raise where.error(p, f"the resolution {resolution} is too small for this many strided stages")
    proxy = _proxy_block(data, "proxy", PROXY_KEYS, where)
    proxy_gpu = _proxy_block(data, "proxy_gpu", GPU_PROXY_KEYS, where)
    return SearchSpace(name, str(data.get("description", "")), resolution, in_channels, num_classes,
                       stem_type, stem_width, tuple(stages), source, tuple(sorted(proxy.items())),
                       tuple(sorted(proxy_gpu.items())))


def _proxy_block(data: dict, name: str, keys: dict[str, tuple[type, ...]], where: "_Path") -> dict[str, Any]:
    block = data.get(name) or {}
    if not isinstance(block, dict):
        raise where.error(name, f"must be a mapping of {', '.join(sorted(keys))}")
    for key, value in block.items():
        if key not in keys:
            raise where.error(f"{name}.{key}", f"unknown key; accepted: {', '.join(sorted(keys))}")
        if not isinstance(value, keys[key]) or (key != "small_stem" and isinstance(value, bool)):
            raise where.error(f"{name}.{key}", f"wrong type: {value!r}")
        if key in TRAINING_AMOUNT_KEYS and value is not None and value < 1:
            raise where.error(f"{name}.{key}", f"must be at least 1, got {value}")
    return block


def _choice_index(choices_data: list, op: OpChoice) -> int:
    for j, c in enumerate(choices_data):
        if (c if isinstance(c, str) else c.get("op")) == op.name:
            return j
    return 0


def _bounded(value: int, path: str, where: _Path, maximum: int) -> int:
    if not 1 <= value <= maximum:
        raise where.error(path, f"must be in [1, {maximum:,}], got {value:,}")
    return value


def _grid(value: Any, path: str, where: _Path, *, multipliers: bool, maximum: int) -> tuple[tuple[int, ...], int]:
    """``3`` or ``{choices: [2, 3, 4], default: 3}`` or, for widths, ``{base: 64, multipliers: [...]}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (_bounded(value, path, where, maximum),), value
    if not isinstance(value, dict):
        raise where.error(path, f"must be an integer or a mapping with `choices`, got {value!r}")
    if multipliers and "base" in value:
        base = _req(value, "base", int, where, path)
        mults = value.get("multipliers")
        if not isinstance(mults, list) or not mults:
            raise where.error(f"{path}.multipliers", "must be a non-empty list of numbers")
        choices = []
        for m in mults:
            if not isinstance(m, (int, float)) or m <= 0 or not float(base * m).is_integer():
                raise where.error(f"{path}.multipliers", f"{m!r} x {base} must be a positive whole number")
            choices.append(int(base * m))
        for c in choices:
            _bounded(c, f"{path}.multipliers", where, maximum)
        default_mult = value.get("default", 1)
        if not isinstance(default_mult, (int, float)) or isinstance(default_mult, bool) \
                or not math.isfinite(default_mult):
            raise where.error(f"{path}.default", f"must be one of the multipliers, got {default_mult!r}")
        default = int(base * default_mult)
    else:
        choices = value.get("choices")
        if not isinstance(choices, list) or not choices or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in choices):
            raise where.error(f"{path}.choices", "must be a non-empty list of positive integers")
        for c in choices:
            _bounded(c, f"{path}.choices", where, maximum)
        default = value.get("default", choices[0])
    if default not in choices:
        raise where.error(f"{path}.default", f"{default!r} is not one of the choices {choices}")
    return tuple(dict.fromkeys(choices)), default
