"""Architecture specs: frozen, JSON round-trippable descriptions of one network, with a stable hash."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from nasconv.errors import SpaceError

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "small", "cifar")
FORMAT_VERSION = 1


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
        return float(f"{value:.12g}")
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
        try:
            stem = data["stem"]
            stages = tuple(
                StageSpec(
                    block=str(s["block"]), depth=_int(s["depth"], f"stages[{i}].depth"),
                    width=_int(s["width"], f"stages[{i}].width"), stride=_int(s["stride"], f"stages[{i}].stride"),
                    op=OpChoice.make(s["op"], s.get("hyper") or {}),
                    expansion=_int(s.get("expansion", 4 if s["block"] == "bottleneck" else 1),
                                   f"stages[{i}].expansion"),
                )
                for i, s in enumerate(data["stages"])
            )
            arch = cls(
                space=str(data["space"]),
                resolution=_int(data["resolution"], "resolution"),
                in_channels=_int(data["in_channels"], "in_channels"),
                num_classes=_int(data["num_classes"], "num_classes"),
                stem=str(stem["type"]), stem_width=_int(stem["width"], "stem.width"),
                stages=stages, head=str(data.get("head", "avgpool-linear")),
            )
        except SpaceError:
            raise
        except (KeyError, TypeError, AttributeError) as exc:
            raise SpaceError(f"malformed architecture JSON: missing or wrong field {exc}") from None
        arch.check()
        return arch

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpaceError(f"architecture is not valid JSON: {exc}") from None
        if isinstance(data, dict) and "arch" in data and isinstance(data["arch"], dict):
            data = data["arch"]  # accept the output of `nasconv sample --json` / export metadata
        if not isinstance(data, dict):
            raise SpaceError("architecture JSON must be an object")
        return cls.from_dict(data)

    # --- identity ---------------------------------------------------------------------------
    @property
    def arch_hash(self) -> str:
        """Stable 16-hex-digit hash of the canonical JSON (key order and 4 vs 4.0 do not matter)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def check(self) -> None:
        """Structural sanity (types and ranges); membership in a space is the space's job."""
        if self.stem not in STEMS:
            raise SpaceError(f"stem.type must be one of {', '.join(STEMS)}, got {self.stem!r}")
        for name, v in (("resolution", self.resolution), ("in_channels", self.in_channels),
                        ("num_classes", self.num_classes), ("stem.width", self.stem_width)):
            if v < 1:
                raise SpaceError(f"{name} must be >= 1, got {v}")
        if not self.stages:
            raise SpaceError("an architecture needs at least one stage")
        for i, s in enumerate(self.stages):
            if s.block not in BLOCKS:
                raise SpaceError(f"stages[{i}].block must be one of {', '.join(BLOCKS)}, got {s.block!r}")
            if s.depth < 1 or s.width < 1 or s.stride not in (1, 2) or s.expansion < 1:
                raise SpaceError(f"stages[{i}]: depth and width must be >= 1 and stride 1 or 2, got {s}")

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
        raise SpaceError(f"{key} must be an integer, got {value!r}")
    return value
