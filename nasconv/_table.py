"""Plain-text tables for people (``--json`` is for machines)."""

from __future__ import annotations

from typing import Any, Sequence


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, align: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)
    def fmt(r: list[str]) -> str:
        return "  ".join(v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(r, widths, align)).rstrip()
    line = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(cells[0]), line] + [fmt(r) for r in cells[1:]])
