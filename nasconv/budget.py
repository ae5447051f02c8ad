"""Budgets: ``4gflops``, ``800mflops``, ``4gmacs``, ``20mparams``, ``15ms``, comma-separated.

Units follow the seed papers, where ResNet-50 costs "4.1 GFLOPs": one FLOP in a budget is one
multiply-add, so ``4gflops`` and ``4gmacs`` are the same limit (4e9 MACs per image).
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from nasconv.errors import BudgetError, UsageError

ACCEPTED = ("accepted forms: <number><k|m|g|t><flops|macs|params> or <number>ms, comma-separated, "
            "e.g. 4gflops, 800mflops, 4gmacs, 20mparams, 15ms, 4gflops,20mparams "
            "(1 FLOP = 1 multiply-add, as in the papers)")
_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
# ASCII only: float() also reads other scripts' digits, which are not among the accepted forms
_TERM = re.compile(r"^(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?:(?P<ms>ms)|(?P<prefix>[kmgt]?)(?P<unit>flops?|macs?|params?))$",
                   re.ASCII)

# Bounds on a budget, far from any real one (ResNet-50 is 4.1 GFLOPs and 25.6M parameters, the
# largest models ~1e12 parameters; a forward pass takes micro- to milliseconds). They keep limits
# finite, in int64 (as storages hold them) and spelled exactly by the canonical text, which names
# the study: a budget outside them is refused rather than silently rounded.
#: the longest budget text read; a budget is at most three short terms
MAX_BUDGET_CHARS = 1000
#: the largest MAC or parameter limit, 1e6 tflops
MAX_COUNT = 10**18
#: latency limits in milliseconds: from 1 ns to about 11.6 days
MIN_LATENCY_MS = 1e-6
MAX_LATENCY_MS = 1e9


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
    """Parse ``4gflops,20mparams``; raise :class:`UsageError` naming the accepted forms.

    Any text gives either a :class:`Budget` whose ``text`` parses back to the same limits, or a
    :class:`UsageError` with a one-line message.
    """
    if text is None or not str(text).strip():
        return Budget()
    text = str(text)
    if len(text) > MAX_BUDGET_CHARS:
        raise UsageError(f"budget {_quote(text)} is {len(text):,} characters long, more than the "
                         f"{MAX_BUDGET_CHARS:,} a budget may have; {ACCEPTED}")
    limits: dict[str, Any] = {}
    for raw in text.split(","):
        shown = _quote(raw.strip())
        term = raw.strip().lower().replace("_", "")
        m = _TERM.match(term)
        if not m:
            raise UsageError(f"malformed budget {shown}; {ACCEPTED}")
        # the grammar admits only non-negative decimals: no sign, exponent, nan or inf
        with localcontext() as ctx:
            ctx.prec = len(m["num"]) + 20  # exact: a count is the number times a power of ten
            exact = Decimal(m["num"]) * _PREFIX[m["prefix"] or ""]
        if exact <= 0:
            raise UsageError(f"budget {shown} must be positive; {ACCEPTED}")
        if m["ms"]:
            key, limit = "latency_ms", float(m["num"])
            if not MIN_LATENCY_MS <= limit <= MAX_LATENCY_MS:
                raise UsageError(f"budget {shown} is out of range: a latency limit must be from "
                                 f"{_decimal(MIN_LATENCY_MS)} to {_decimal(MAX_LATENCY_MS)} ms; {ACCEPTED}")
        else:
            key = "params" if m["unit"].startswith("param") else "macs"
            if exact > MAX_COUNT:
                raise UsageError(f"budget {shown} is too large: the most is {_short(MAX_COUNT)}"
                                 f"{'params' if key == 'params' else 'flops'}; {ACCEPTED}")
            limit = int(exact.to_integral_value(ROUND_HALF_EVEN))  # as round() did, without float error
            if limit < 1:
                raise UsageError(f"budget {shown} rounds to 0 {key}; it must be at least 1; {ACCEPTED}")
        if key in limits:
            raise UsageError(f"budget {_quote(text)} gives the {key} limit twice; {ACCEPTED}")
        limits[key] = limit
    return Budget(text=canonical_budget_text(limits), **limits)


def canonical_budget_text(limits: dict[str, Any]) -> str:
    parts = []
    if limits.get("macs") is not None:
        parts.append(_short(limits["macs"]) + "flops")
    if limits.get("params") is not None:
        parts.append(_short(limits["params"]) + "params")
    if limits.get("latency_ms") is not None:
        parts.append(_decimal(limits["latency_ms"]) + "ms")
    return ",".join(parts)


_PREFIXES = (("t", 10**12), ("g", 10**9), ("m", 10**6), ("k", 10**3))


def _short(n: int) -> str:
    """``4g``, ``800m``, ``1.2345671g``: ``n`` exactly, with a prefix when ``n >= 1000``."""
    for p, f in _PREFIXES:
        if n >= f and n % (f // 1000) == 0:
            s = f"{n / f:g}"
            if "e" not in s and Decimal(s) * f == n:
                return s + p  # the historical spelling, which names existing studies
            break
    for p, f in _PREFIXES:  # :g rounds to 6 digits; spell the rest out
        if n >= f:
            return format((Decimal(n) / f).normalize(), "f") + p
    return str(n)


def _decimal(x: float) -> str:
    """``15``, ``0.5``, ``0.00001``: ``x`` in plain decimals (no exponent), exactly."""
    s = f"{x:g}"
    if "e" in s or float(s) != x:
        s = format(Decimal(repr(x)).normalize(), "f")
    return s


_REPR = reprlib.Repr()
_REPR.maxstring = 60


def _quote(s: str) -> str:
    """``s`` quoted and shortened for a one-line message (repr escapes newlines)."""
    return _REPR.repr(s)


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
            f"the fewest parameters achievable are {bounds['min_params']:,} "
            f"({format_count(bounds['min_params'])}params)")
