"""Asynchronous successive halving over several objectives (ASHA, Li et al. 2020, with the
multi-objective ranking of MO-ASHA, Schmucker et al. 2021): which evaluation a free worker runs next.

Whenever a worker is free the driver asks :func:`next_promotion` first: a candidate that is in
the top ``1/eta`` of its rung and has not been promoted is promoted, higher rungs first; only when
there is none does the sampler propose a new candidate. No worker waits for a rung to fill, and a
rung's top fraction is decided by the results it has so far (as in ASHA, a candidate promoted
early may later turn out not to belong to the top; it keeps its promotion).

The top of a rung: feasible candidates before infeasible ones (by their constraint violation),
then by non-dominated rank, ties broken by crowding distance (larger first: the extremes of a
front go first, as in NSGA-II), then by trial number.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import optuna

import nasconv._optuna as _optuna
from nasconv.results import EVALUATED, first_per_architecture
from nasconv.search.fidelity import Fidelity
from nasconv.storage import RungResult


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each row among ``losses`` (infinite at each objective's extremes)."""
    n, m = losses.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, math.inf)
    for j in range(m):
        order = np.argsort(losses[:, j], kind="stable")
        col = losses[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = dist[order[-1]] = math.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


def top_order(losses: np.ndarray, penalty: np.ndarray | None = None) -> list[int]:
    """Row indices, best first: non-dominated rank (feasible first), then crowding distance."""
    if len(losses) == 0:
        return []
    rank = _optuna.nondomination_rank(losses, penalty)
    crowd = np.zeros(len(losses))
    for r in np.unique(rank):
        idx = np.flatnonzero(rank == r)
        crowd[idx] = crowding_distance(losses[idx])
    return sorted(range(len(losses)), key=lambda i: (rank[i], -crowd[i], i))


def rung_values(complete: Sequence[optuna.trial.FrozenTrial], rows: Sequence[RungResult]
                ) -> dict[int, dict[int, list[float]]]:
    """rung -> {trial number -> objective values at that rung} (first run of each rung; rung 0
    is what Optuna was told), over evaluated trials, one per architecture."""
    trials = first_per_architecture([t for t in complete if t.user_attrs.get("status") in EVALUATED])
    out: dict[int, dict[int, list[float]]] = {0: {t.number: list(t.values) for t in trials}}
    known = set(out[0])
    for r in rows:
        if r.repeat == 0 and r.rung > 0 and r.trial_number in known and r.values:
            out.setdefault(r.rung, {})[r.trial_number] = list(r.values)
    return out


def penalties(complete: Iterable[optuna.trial.FrozenTrial]) -> dict[int, float]:
    """trial number -> its largest constraint value (> 0: over budget), 0 without constraints."""
    out = {}
    for t in complete:
        cons = t.system_attrs.get("constraints")
        out[t.number] = max([0.0, *(float(c) for c in cons)]) if cons else 0.0
    return out


def next_promotion(values: dict[int, dict[int, list[float]]], directions: Sequence[str], fid: Fidelity,
                   busy: set[tuple[int, int]], penalty: dict[int, float] | None = None) -> tuple[int, int] | None:
    """(trial number, rung to promote it to), or None when no candidate is due.

    ``busy``: (trial, rung) pairs being evaluated or claimed already, by this driver or another.
    """
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    for rung in range(fid.rungs - 2, -1, -1):
        here = values.get(rung, {})
        k = int(len(here) // fid.eta)
        if k == 0:
            continue
        numbers = sorted(here)
        losses = np.array([here[n] for n in numbers], dtype=float) * sign
        pen = np.array([(penalty or {}).get(n, 0.0) for n in numbers]) if penalty else None
        above = values.get(rung + 1, {})
        for i in top_order(losses, pen)[:k]:
            n = numbers[i]
            if pen is not None and pen[i] > 0:
                break  # infeasible candidates are never promoted
            if n not in above and (n, rung + 1) not in busy:
                return n, rung + 1
    return None
