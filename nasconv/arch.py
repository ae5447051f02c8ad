"""Architecture specs: frozen, JSON round-trippable descriptions of one network, with a stable hash."""

from __future__ import annotations

import hashlib
import json
import math
import reprlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from nasconv.errors import SpaceError

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "small", "cifar")
FORMAT_VERSION = 1

# Bounds on what an architecture may hold, checked before anything is built from it. Real
# networks sit far below them (a ResNet stage has 2-36 blocks, even ResNet-1202 has 200; widths
# reach a few thousand channels; 3-5 stages; inputs of a few hundred pixels; at most tens of
# thousands of classes). Above them a file is corrupt or hostile, and refusing it here keeps the
# cost estimate, the model build and every table from computing or allocating without bound.
#: the longest architecture JSON text read (characters); a spec is ~1 kB, an export's metadata a few kB
MAX_JSON_CHARS = 1_000_000
#: stages per network
MAX_STAGES = 64
#: blocks per stage
MAX_DEPTH = 10_000
#: channels of a stage's mid width, of the stem and of the input
MAX_WIDTH = 65_536
#: a bottleneck's output-to-mid width ratio (ResNet's is 4)
MAX_EXPANSION = 64
#: input side in pixels
MAX_RESOLUTION = 16_384
#: output classes (ImageNet-21k has 21,841)
MAX_CLASSES = 10_000_000
#: hyperparameters of one operator, characters of one name or string value, magnitude of a number
MAX_HYPER = 32
MAX_NAME_CHARS = 256
MAX_HYPER_NUMBER = 10**15


#: ``"kind"`` of an architecture JSON -> its reader, registered by the package that defines the
#: kind (:mod:`nasconv.custom` registers ``model``: a candidate of a user's own network)
ARCH_KINDS: dict[str, Callable[[Mapping[str, Any]], Any]] = {}


def register_arch_kind(kind: str, reader: Callable[[Mapping[str, Any]], Any]) -> None:
    ARCH_KINDS[kind] = reader


def canonical_value(value: Any) -> Any:
    """One spelling per value: 4.0 -> 4, 0.1250000001 -> 0.125 (12 significant digits)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpaceError(f"hyperparameter values must be finite, got {value!r}")
        if value.is_integer():
            return int(value)
        rounded = float(f"{value:.12g}")
        # 100000000000.5 rounds to 100000000000.0: an int here as when the JSON is read back
        return int(rounded) if rounded.is_integer() else rounded
    raise SpaceError(f"hyperparameter values must be numbers or strings, got {value!r}")


@dataclass(frozen=True)
class OpChoice:
    """An operator name with its hyperparameters, e.g. ``tgc(blocks=2, groups=4)``."""

    name: str
    hyper: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, name: str, hyper: Mapping[str, Any] | None = None) -> "OpChoice":
        items = tuple(sorted((str(k), canonical_value(v)) for k, v in (hyper or {}).items()))
        return cls(str(name), items)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.hyper)

    def label(self) -> str:
        if not self.hyper:
            return self.name
        return f"{self.name}(" + ",".join(f"{k}={_fmt(v)}" for k, v in self.hyper) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.name, **self.kwargs}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        frac = (1 / v) if v else 0
        if v and float(frac).is_integer():
            return f"1/{int(frac)}"
    return str(v)


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``depth`` blocks of ``block`` type, mid width ``width``, first block ``stride``.

    A bottleneck's output has ``width * expansion`` channels; the operator replaces its 3 x 3
    convolution. A basic block's output has ``width`` channels; the operator replaces both
    of its 3 x 3 convolutions.
    """

    block: str
    depth: int
    width: int
    stride: int
    op: OpChoice
    expansion: int = 1

    @property
    def out_channels(self) -> int:
        return self.width * self.expansion


@dataclass(frozen=True)
class ArchSpec:
    """One network of a search space."""

    space: str
    resolution: int
    in_channels: int
    num_classes: int
    stem: str
    stem_width: int
    stages: tuple[StageSpec, ...]
    head: str = field(default="avgpool-linear")

    # --- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "space": self.space,
            "resolution": self.resolution,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "stem": {"type": self.stem, "width": self.stem_width},
            "stages": [
                {"block": s.block, "depth": s.depth, "width": s.width, "stride": s.stride,
                 "expansion": s.expansion, "op": s.op.name, "hyper": s.op.kwargs}
                for s in self.stages
            ],
            "head": self.head,
        }

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=None if indent else (",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArchSpec":
        """Read :meth:`to_dict`'s output; refuse, with a one-line :class:`SpaceError`, anything else.

        Keys that nasconv does not know are ignored, as they always were (files may carry extra
        information); a ``format`` other than :data:`FORMAT_VERSION` is refused.
        """
        if not isinstance(data, Mapping):
            raise SpaceError(f"architecture JSON must be an object, got {_kind(data)}")
        if "kind" in data:  # another kind of space's candidate (nasconv.custom: a user's own model)
            reader = ARCH_KINDS.get(data["kind"]) if isinstance(data["kind"], str) else None
            if reader is None:
                raise SpaceError(f"architecture kind {_show(data['kind'])} is not known; known: "
                                 f"{', '.join(ARCH_KINDS) or 'none'}")
            return reader(data)
        if "format" in data and (isinstance(data["format"], bool) or data["format"] != FORMAT_VERSION):
            raise SpaceError(f"architecture format {_show(data['format'])} is not supported; "
                             f"this nasconv reads format {FORMAT_VERSION}")
        stem = _field(data, "stem", "stem", Mapping)
        raw_stages = _field(data, "stages", "stages", (list, tuple))
        if len(raw_stages) > MAX_STAGES:  # before a single stage is read
            raise SpaceError(f"an architecture may have at most {MAX_STAGES} stages, got {len(raw_stages):,}")
        stages = []
        for i, s in enumerate(raw_stages):
            where = f"stages[{i}]"
            if not isinstance(s, Mapping):
                raise SpaceError(f"malformed architecture JSON: {where} must be an object, got {_kind(s)}")
            block = _str(_field(s, "block", f"{where}.block"), f"{where}.block")
            stages.append(StageSpec(
                block=block,
                depth=_int(_field(s, "depth", f"{where}.depth"), f"{where}.depth"),
                width=_int(_field(s, "width", f"{where}.width"), f"{where}.width"),
                stride=_int(_field(s, "stride", f"{where}.stride"), f"{where}.stride"),
                op=OpChoice.make(_str(_field(s, "op", f"{where}.op"), f"{where}.op"),
                                 _hyper(s.get("hyper"), f"{where}.hyper")),
                expansion=_int(s.get("expansion", 4 if block == "bottleneck" else 1), f"{where}.expansion"),
            ))
        arch = cls(
            space=_str(_field(data, "space", "space"), "space"),
            resolution=_int(_field(data, "resolution", "resolution"), "resolution"),
            in_channels=_int(_field(data, "in_channels", "in_channels"), "in_channels"),
            num_classes=_int(_field(data, "num_classes", "num_classes"), "num_classes"),
            stem=_str(_field(stem, "type", "stem.type"), "stem.type"),
            stem_width=_int(_field(stem, "width", "stem.width"), "stem.width"),
            stages=tuple(stages), head=_str(data.get("head", "avgpool-linear"), "head"),
        )
        arch.check()
        return arch

    @classmethod
    def from_json(cls, text: str | bytes) -> "ArchSpec":
        """Parse an architecture (or the ``{"arch": ...}`` wrapper of ``sample --json`` / an export).

        Any input either gives a checked :class:`ArchSpec` or raises :class:`SpaceError` with a
        one-line message, in time and memory bounded by :data:`MAX_JSON_CHARS`.
        """
        if not isinstance(text, (str, bytes, bytearray)):
            raise SpaceError(f"architecture JSON must be text, got {type(text).__name__}")
        if len(text) > MAX_JSON_CHARS:
            raise SpaceError(f"architecture JSON is {len(text):,} characters long; an architecture file "
                             f"may have at most {MAX_JSON_CHARS:,}")
        try:
            data = json.loads(text)
        except RecursionError:  # json's C scanner counts nesting against the recursion limit
            raise SpaceError("architecture is not valid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, undecodable bytes, integers of over 4300 digits
            raise SpaceError(f"architecture is not valid JSON: {_one_line(str(exc))}") from None
        if isinstance(data, dict) and "arch" in data and isinstance(data["arch"], dict):
            data = data["arch"]  # accept the output of `nasconv sample --json` / export metadata
        if not isinstance(data, dict):
            raise SpaceError(f"architecture JSON must be an object, got {_kind(data)}")
        return cls.from_dict(data)

    # --- identity ---------------------------------------------------------------------------
    @property
    def arch_hash(self) -> str:
        """Stable 16-hex-digit hash of the canonical JSON (key order and 4 vs 4.0 do not matter)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def check(self) -> None:
        """Structural sanity (types and ranges); membership in a space is the space's job."""
        if self.stem not in STEMS:
            raise SpaceError(f"stem.type must be one of {', '.join(STEMS)}, got {_show(self.stem)}")
        for name, v, most in (("resolution", self.resolution, MAX_RESOLUTION),
                              ("in_channels", self.in_channels, MAX_WIDTH),
                              ("num_classes", self.num_classes, MAX_CLASSES),
                              ("stem.width", self.stem_width, MAX_WIDTH)):
            _check_range(name, v, most)
        if not self.stages:
            raise SpaceError("an architecture needs at least one stage")
        if len(self.stages) > MAX_STAGES:
            raise SpaceError(f"an architecture may have at most {MAX_STAGES} stages, got {len(self.stages):,}")
        for i, s in enumerate(self.stages):
            if s.block not in BLOCKS:
                raise SpaceError(f"stages[{i}].block must be one of {', '.join(BLOCKS)}, got {_show(s.block)}")
            _check_range(f"stages[{i}].depth", s.depth, MAX_DEPTH)
            _check_range(f"stages[{i}].width", s.width, MAX_WIDTH)
            _check_range(f"stages[{i}].expansion", s.expansion, MAX_EXPANSION)
            if s.stride not in (1, 2) or isinstance(s.stride, bool):
                raise SpaceError(f"stages[{i}].stride must be 1 or 2, got {_show(s.stride)}")

    def ops_label(self) -> str:
        return " | ".join(s.op.label() for s in self.stages)

    def with_overrides(self, **changes: Any) -> "ArchSpec":
        return replace(self, **changes)


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise SpaceError(f"{key} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise SpaceError(f"{key} must be an integer, got {_show(value)}")
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise SpaceError(f"{key} must be a string, got {_show(value)}")
    if len(value) > MAX_NAME_CHARS:
        raise SpaceError(f"{key} must be at most {MAX_NAME_CHARS} characters, got {len(value):,}")
    return value


def _field(data: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    if key not in data:
        raise SpaceError(f"malformed architecture JSON: missing field {where!r}")
    value = data[key]
    if kind is not None and not isinstance(value, kind):
        what = "an object" if kind is Mapping else "a list"
        raise SpaceError(f"malformed architecture JSON: {where} must be {what}, got {_kind(value)}")
    return value


def _hyper(value: Any, where: str) -> dict[str, Any]:
    """An operator's hyperparameters, refused before :func:`canonical_value` sees anything odd."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpaceError(f"malformed architecture JSON: {where} must be an object, got {_kind(value)}")
    if len(value) > MAX_HYPER:
        raise SpaceError(f"{where} may have at most {MAX_HYPER} entries, got {len(value):,}")
    for k, v in value.items():
        key = f"{where}.{_str(k, f'a key of {where}')}"
        if isinstance(v, str):
            _str(v, key)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, float) and not math.isfinite(v):  # math.isfinite overflows on a huge int
                raise SpaceError(f"hyperparameter values must be finite, got {key} = {v!r}")
            if abs(v) > MAX_HYPER_NUMBER:
                raise SpaceError(f"{key} must be at most {MAX_HYPER_NUMBER:.0e} in magnitude, got {_show(v)}")
        elif not (v is None or isinstance(v, bool)):
            raise SpaceError(f"hyperparameter values must be numbers or strings, got {key} = {_show(v)}")
    return dict(value)


def _check_range(key: str, value: int, most: int) -> None:
    if value < 1:
        raise SpaceError(f"{key} must be >= 1, got {_show(value)}")
    if value > most:
        raise SpaceError(f"{key} must be at most {most:,}, got {_show(value)}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 60, 60, 40


def _show(value: Any) -> str:
    """A short one-line rendering of a (possibly huge or hostile) value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length():,} bits"  # repr() of a huge int is slow or refused
    try:
        return _one_line(_REPR.repr(value))
    except Exception:  # a value whose repr fails still gets a message
        return f"a {type(value).__name__}"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), f"a {type(value).__name__}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
