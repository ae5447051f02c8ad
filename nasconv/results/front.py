"""The Pareto front of a study: feasible, evaluated, non-dominated, one trial per architecture, and its hypervolume."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import optuna

import nasconv._optuna as _optuna

EVALUATED = ("evaluated", "cached")


def first_per_architecture(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials in number order, an architecture once: a repeat (served from the evaluation
    cache, with the first one's values) would list the same network twice on a front."""
    seen: set[str] = set()
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        h = t.user_attrs.get("arch_hash")
        if h is not None and h in seen:
            continue
        if h is not None:
            seen.add(h)
        out.append(t)
    return out


def feasible_front(complete: Sequence[optuna.trial.FrozenTrial],
                   directions: Sequence[optuna.study.StudyDirection]) -> list[optuna.trial.FrozenTrial]:
    """What :func:`study_front` gives, from trials the caller already read."""
    return first_per_architecture([t for t in _optuna.feasible_pareto_front(complete, directions)
                                   if t.user_attrs.get("status") in EVALUATED])


def losses(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[str]) -> np.ndarray:
    """The trials' objective values as minimised losses (maximised objectives negated)."""
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.array([t.values for t in trials], dtype=float) * sign


def hypervolume(front_losses: np.ndarray, reference: Sequence[float]) -> float:
    """Hypervolume of the points strictly inside ``reference``; 0 when none is."""
    ref = np.asarray(reference, dtype=float)
    inside = front_losses[(front_losses < ref).all(axis=1)] if len(front_losses) else front_losses
    if len(inside) == 0:
        return 0.0
    return _optuna.hypervolume(inside, ref)
