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
    """Costs are exact; latency (median) and accuracy carry their 95% intervals in brackets. A
    multi-fidelity or repeated front also shows each member's rung and number of pooled runs (with
    more than one, the values are means over seeds with t-intervals)."""
    rows = [_row(f["trial"], f["ops"], f) for f in front]
    if baseline:
        rows.append(_row("baseline", "standard everywhere", baseline))
    head, align = ["trial", "operator per stage", "MACs", "params", "latency ms [95%]", "accuracy [95%]"], "llrrrr"
    if any(f.get("rung") or f.get("runs", 1) > 1 for f in front):
        head, align = head + ["rung", "runs"], align + "rr"
        for r, f in zip(rows, front):
            r += [f.get("rung", 0), f.get("runs", 1)]
        if baseline:
            rows[-1] += ["-", "1"]
    return render_table(head, rows, align=align)
