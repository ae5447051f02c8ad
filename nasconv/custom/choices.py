"""Operator choices of a stage, as a space file spells them: ``[dwsep, {op: group, groups: [2, 4]}]``.

One parser for both space kinds: :mod:`nasconv.spaces.model` (built networks) and
:mod:`nasconv.custom.space` (a user's own model). Each entry is an operator name or a mapping
with ``op`` and hyperparameters; a list of values is a grid, expanded to one choice per
combination (duplicates dropped, order kept).

Layer: in ``custom`` (below ``spaces``); imports ``arch``, ``ops`` and ``errors``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Protocol

from nasconv.arch import OpChoice
from nasconv.errors import NasconvError, SpaceError
from nasconv.ops import get_op

#: operator choices one entry of ``choices`` may expand to (the product of its hyperparameter lists)
MAX_OP_GRID = 4096


class ErrorAt(Protocol):
    """Makes the error for a key path of the file being read (``stages[2].choices[4]``)."""

    def error(self, path: str, msg: str) -> SpaceError: ...


def parse_op_choices(data: Any, path: str, where: ErrorAt, *,
                     locate_value_errors: bool = True) -> tuple[OpChoice, ...]:
    """The operator choices that ``data`` (the file's ``choices`` list at ``path``) spells.

    ``locate_value_errors``: a hyperparameter value that is no number or string (or not finite)
    is reported at its path; with ``False`` the :class:`SpaceError` of
    :func:`nasconv.arch.canonical_value` is raised as it is.
    """
    if not isinstance(data, list) or not data:
        raise where.error(path, "must be a non-empty list of operators")
    ops: list[OpChoice] = []
    for j, item in enumerate(data):
        p = f"{path}[{j}]"
        if isinstance(item, str):
            item = {"op": item}
        if not isinstance(item, dict) or not isinstance(item.get("op"), str):
            raise where.error(p, f"must be an operator name or a mapping with `op`, got {item!r}")
        try:
            spec = get_op(item["op"])
        except NasconvError as exc:
            raise where.error(f"{p}.op", str(exc)) from None
        grid: dict[str, list[Any]] = {}
        for key, value in item.items():
            if key == "op":
                continue
            if key not in spec.hyper:
                raise where.error(f"{p}.{key}", f"unknown hyperparameter of {spec.name}; accepted: "
                                                f"{', '.join(spec.hyper) or 'none'}")
            values = value if isinstance(value, list) else [value]
            if not values:
                raise where.error(f"{p}.{key}", "empty list of values")
            grid[key] = values
        n = math.prod(len(v) for v in grid.values())
        if n > MAX_OP_GRID:
            raise where.error(p, f"its hyperparameter lists make {n:,} operator choices, more than {MAX_OP_GRID:,}")
        for combo in itertools.product(*grid.values()):
            try:
                op = OpChoice.make(spec.name, dict(zip(grid, combo)))
            except SpaceError as exc:
                if not locate_value_errors:
                    raise
                raise where.error(p, str(exc)) from None
            if op not in ops:
                ops.append(op)
    return tuple(ops)
