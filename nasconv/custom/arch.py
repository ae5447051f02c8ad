"""A candidate of a model space: one operator choice per stage, with the space it belongs to.

Its JSON carries the whole space (the worker that builds it needs the factory, the slots and the
stages; no file of the user's is read but the model's own code), its hash only the space's
content hash and the choices. It reads back through :meth:`nasconv.arch.ArchSpec.from_dict`,
which dispatches on ``"kind": "model"``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Mapping

from nasconv.arch import FORMAT_VERSION, OpChoice, register_arch_kind
from nasconv.custom.factory import module_root
from nasconv.custom.space import KIND, ModelSpace, parse_model_space
from nasconv.errors import SpaceError


@dataclass(frozen=True)
class StageChoice:
    """What code written for ResNet stages reads of a stage: its operator (depth and width are the model's)."""

    name: str
    op: OpChoice
    block: str = "model"
    depth: int = 1
    width: int = 1
    stride: int = 1
    expansion: int = 1


@dataclass(frozen=True, eq=False, init=False)
class ModelArch:
    """One network of a :class:`ModelSpace`: the user's model with each stage's slots replaced.

    ``num_classes``, where given and not the space's, puts the candidate on the space whose factory
    is given that class count (:mod:`.classes`), as ``dataclasses.replace(arch, num_classes=K)``
    does for nasconv's own networks."""

    model_space: ModelSpace
    ops: tuple[OpChoice, ...]

    kind = KIND

    def __init__(self, model_space: ModelSpace, ops: tuple[OpChoice, ...], num_classes: int | None = None) -> None:
        if num_classes is not None and num_classes != model_space.num_classes:
            model_space = replace(model_space, num_classes=num_classes)
        object.__setattr__(self, "model_space", model_space)
        object.__setattr__(self, "ops", tuple(ops))
    stem = "model"
    head = "model"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelArch) and self.arch_hash == other.arch_hash

    def __hash__(self) -> int:
        return hash(self.arch_hash)

    @property
    def space(self) -> str:
        return self.model_space.name

    @property
    def space_hash(self) -> str:
        return self.model_space.content_hash

    @property
    def resolution(self) -> int:
        return self.model_space.resolution

    @property
    def in_channels(self) -> int:
        return self.model_space.in_channels

    @property
    def num_classes(self) -> int:
        return self.model_space.num_classes

    @property
    def stem_width(self) -> int:
        return 0

    @property
    def stages(self) -> tuple[StageChoice, ...]:
        return tuple(StageChoice(st.name, op) for st, op in zip(self.model_space.stages, self.ops))

    # --- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        s = self.model_space
        return {"format": FORMAT_VERSION, "kind": KIND, "space": s.name, "space_hash": s.content_hash,
                "resolution": s.resolution, "in_channels": s.in_channels, "num_classes": s.num_classes,
                "stages": [{"name": st.name, "op": op.name, "hyper": op.kwargs} for st, op in zip(s.stages, self.ops)],
                "model_space": s.to_data(), "base_dir": s.base_dir, "module_dir": module_root(s)}

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=None if indent else (",", ":"))

    @property
    def arch_hash(self) -> str:
        """16 hex digits over the space's content hash and the choices (not the file's wording)."""
        text = json.dumps({"space_hash": self.space_hash, "ops": [op.to_dict() for op in self.ops]},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def check(self) -> None:
        self.model_space.check_arch(self)

    def ops_label(self) -> str:
        return " | ".join(op.label() for op in self.ops)

    # --- what build_model and estimate_cost hand over to ----------------------------------------
    def estimate_cost(self, resolution: int | None = None, *, num_classes: int | None = None,
                      in_channels: int | None = None) -> Any:
        from nasconv.custom.cost import model_cost

        return model_cost(self, resolution, num_classes=num_classes, in_channels=in_channels)

    def build(self, num_classes: int | None = None, in_channels: int | None = None, **_: Any) -> Any:
        from nasconv.custom.build import build_candidate

        return build_candidate(self, num_classes=num_classes, in_channels=in_channels)


def model_arch_from_dict(data: Mapping[str, Any]) -> ModelArch:
    """Read :meth:`ModelArch.to_dict`'s output; anything else is refused in one line."""
    space_data = data.get("model_space")
    if not isinstance(space_data, Mapping):
        raise SpaceError("malformed model architecture JSON: missing object 'model_space'")
    base_dir, module_dir = data.get("base_dir", ""), data.get("module_dir", "")
    space = parse_model_space(dict(space_data), source=f"architecture of space {data.get('space')!r}",
                              base_dir=base_dir if isinstance(base_dir, str) else "",
                              module_dir=module_dir if isinstance(module_dir, str) else "")
    stages = data.get("stages")
    if not isinstance(stages, list) or len(stages) != len(space.stages):
        raise SpaceError(f"malformed model architecture JSON: 'stages' must list {len(space.stages)} choices")
    ops = []
    for i, s in enumerate(stages):
        if not (isinstance(s, Mapping) and isinstance(s.get("op"), str) and isinstance(s.get("hyper", {}), Mapping)):
            raise SpaceError(f"malformed model architecture JSON: stages[{i}] must be an object with op and hyper")
        ops.append(OpChoice.make(s["op"], s.get("hyper") or {}))
    arch = ModelArch(space, tuple(ops))
    space.check_arch(arch)
    if data.get("space_hash") not in (None, space.content_hash):
        raise SpaceError(f"model architecture JSON names space content {data.get('space_hash')}, its space "
                         f"parses to {space.content_hash}")
    return arch


register_arch_kind(KIND, model_arch_from_dict)
