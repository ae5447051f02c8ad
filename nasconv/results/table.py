"""The front as a text table for people (``--json`` gives the same rows for machines)."""

from __future__ import annotations

from typing import Any

from nasconv._table import render_table
from nasconv.budget import format_count


def _fmt(v: Any, ci: Any, spec: str) -> str:
    """``0.8025 [0.7847, 0.8195]``: the value and its 95% interval (the value alone without one)."""
    if v is None:
        return "-"
    if not ci:
        return format(v, spec)
    return f"{format(v, spec)} [{format(ci[0], spec)}, {format(ci[1], spec)}]"


def _row(first: Any, ops: str, f: dict[str, Any]) -> list[Any]:
    acc = f.get("accuracy")
    return [first, ops, format_count(f["macs"]), format_count(f["params"]),
            _fmt(f.get("latency_ms"), f.get("latency_ci_ms"), ".2f"),
            _fmt(acc, f.get("accuracy_ci"), ".4f") if acc is not None else _fmt(f.get("score"), None, ".4g")]


def front_table(front: list[dict[str, Any]], baseline: dict[str, Any] | None = None) -> str:
    """Costs are exact; latency (median) and accuracy carry their 95% intervals in brackets."""
    rows = [_row(f["trial"], f["ops"], f) for f in front]
    if baseline:
        rows.append(_row("baseline", "standard everywhere", baseline))
    return render_table(["trial", "operator per stage", "MACs", "params", "latency ms [95%]", "accuracy [95%]"],
                        rows, align="llrrrr")
