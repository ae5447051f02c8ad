"""The front as a text table for people (``--json`` gives the same rows for machines)."""

from __future__ import annotations

from typing import Any

from nasconv._table import render_table
from nasconv.budget import format_count


def front_table(front: list[dict[str, Any]], baseline: dict[str, Any] | None = None) -> str:
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    rows = [[f["trial"], f["ops"], format_count(f["macs"]), format_count(f["params"]), fmt(f["latency_ms"], ".2f"),
             fmt(f["accuracy"] if f["accuracy"] is not None else f["score"], ".4f")] for f in front]
    if baseline:
        rows.append(["baseline", "standard everywhere", format_count(baseline["macs"]),
                     format_count(baseline["params"]), fmt(baseline.get("latency_ms"), ".2f"),
                     fmt(baseline.get("accuracy") if baseline.get("accuracy") is not None else baseline.get("score"),
                         ".4f")])
    return render_table(["trial", "operator per stage", "MACs", "params", "latency ms", "accuracy"], rows,
                        align="llrrrr")
