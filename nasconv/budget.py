"""Budgets: ``4gflops``, ``800mflops``, ``4gmacs``, ``20mparams``, ``15ms``, comma-separated.

Units follow the seed papers, where ResNet-50 costs "4.1 GFLOPs": one FLOP in a budget is one
multiply-add, so ``4gflops`` and ``4gmacs`` are the same limit (4e9 MACs per image).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nasconv.errors import BudgetError, UsageError

ACCEPTED = ("accepted forms: <number><k|m|g|t><flops|macs|params> or <number>ms, comma-separated, "
            "e.g. 4gflops, 800mflops, 4gmacs, 20mparams, 15ms, 4gflops,20mparams "
            "(1 FLOP = 1 multiply-add, as in the papers)")
_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_TERM = re.compile(r"^(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?:(?P<ms>ms)|(?P<prefix>[kmgt]?)(?P<unit>flops?|macs?|params?))$")


@dataclass(frozen=True)
class Budget:
    """Upper limits; ``None`` means unconstrained. ``macs`` and ``params`` are integers."""

    macs: int | None = None
    params: int | None = None
    latency_ms: float | None = None
    text: str = ""

    @property
    def is_empty(self) -> bool:
        return self.macs is None and self.params is None and self.latency_ms is None

    def violations(self, *, macs: int | None = None, params: int | None = None,
                   latency_ms: float | None = None) -> list[str]:
        """Human-readable reasons a candidate is over budget (empty when within)."""
        out = []
        if self.macs is not None and macs is not None and macs > self.macs:
            out.append(f"{format_count(macs)}MACs > {format_count(self.macs)}MACs")
        if self.params is not None and params is not None and params > self.params:
            out.append(f"{format_count(params)} params > {format_count(self.params)} params")
        if self.latency_ms is not None and latency_ms is not None and latency_ms > self.latency_ms:
            out.append(f"{latency_ms:.2f} ms > {self.latency_ms:g} ms")
        return out

    def constraints(self, *, macs: int, params: int, latency_ms: float | None = None) -> list[float]:
        """Optuna constraint values (<= 0 means satisfied), relative so that they are comparable."""
        vals = []
        if self.macs is not None:
            vals.append(macs / self.macs - 1.0)
        if self.params is not None:
            vals.append(params / self.params - 1.0)
        if self.latency_ms is not None:
            vals.append((latency_ms / self.latency_ms - 1.0) if latency_ms is not None else 0.0)
        return vals

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "macs": self.macs, "params": self.params, "latency_ms": self.latency_ms}


def parse_budget(text: str | None) -> Budget:
    """Parse ``4gflops,20mparams``; raise :class:`UsageError` naming the accepted forms."""
    if text is None or not str(text).strip():
        return Budget()
    limits: dict[str, Any] = {}
    for raw in str(text).split(","):
        term = raw.strip().lower().replace("_", "")
        m = _TERM.match(term)
        if not m:
            raise UsageError(f"malformed budget {raw.strip()!r}; {ACCEPTED}")
        value = float(m["num"])
        if value <= 0:
            raise UsageError(f"budget {raw.strip()!r} must be positive; {ACCEPTED}")
        if m["ms"]:
            key, limit = "latency_ms", value
        else:
            key = "params" if m["unit"].startswith("param") else "macs"
            limit = int(round(value * _PREFIX[m["prefix"]]))
        if key in limits:
            raise UsageError(f"budget {text!r} gives the {key} limit twice; {ACCEPTED}")
        limits[key] = limit
    return Budget(text=canonical_budget_text(limits), **limits)


def canonical_budget_text(limits: dict[str, Any]) -> str:
    parts = []
    if limits.get("macs") is not None:
        parts.append(_short(limits["macs"]) + "flops")
    if limits.get("params") is not None:
        parts.append(_short(limits["params"]) + "params")
    if limits.get("latency_ms") is not None:
        parts.append(f"{limits['latency_ms']:g}ms")
    return ",".join(parts)


def _short(n: int) -> str:
    for p, f in (("t", 10**12), ("g", 10**9), ("m", 10**6), ("k", 10**3)):
        if n >= f and n % (f // 1000) == 0:
            return f"{n / f:g}{p}"
    return str(n)


def format_count(n: float) -> str:
    """12.3M, 4.09G: for tables."""
    for p, f in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= f:
            return f"{n / f:.3g}{p}" if abs(n) / f < 100 else f"{n / f:.0f}{p}"
    return f"{n:g}"


def check_feasible(budget: Budget, bounds: dict[str, int], space_name: str) -> None:
    """Raise :class:`BudgetError` when no architecture of the space can meet the budget."""
    if budget.macs is not None and bounds["min_macs"] > budget.macs:
        raise BudgetError(
            f"budget {budget.text} is below the cheapest architecture of {space_name}: "
            f"the fewest MACs achievable are {bounds['min_macs']:,} ({format_count(bounds['min_macs'])}flops)")
    if budget.params is not None and bounds["min_params"] > budget.params:
        raise BudgetError(
            f"budget {budget.text} is below the cheapest architecture of {space_name}: "
            f"the fewest parameters achievable are {bounds['min_params']:,} ({format_count(bounds['min_params'])}params)")
