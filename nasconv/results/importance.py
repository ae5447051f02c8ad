"""Optuna's parameter importances per objective (PED-ANOVA, Optuna 5's default), with bootstrap intervals.

Importances come from the evaluated candidates only (a candidate rejected over budget carries
placeholder values, not measurements), one per architecture. The 95% interval of each importance
is the 2.5-97.5 percentile range over resamples of those candidates (with replacement).
"""

from __future__ import annotations

import random
import warnings
from typing import Any, Sequence

import numpy as np
import optuna

#: bootstrap resamples per objective (fewer for large studies: each one refits PED-ANOVA)
RESAMPLES = 20
LARGE_STUDY = 200


def _study_of(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[Any]) -> optuna.Study:
    study = optuna.create_study(directions=list(directions), storage=optuna.storages.InMemoryStorage())
    study.add_trials(trials)
    return study


def _importances(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[Any], index: int
                 ) -> dict[str, float]:
    study = _study_of(trials, directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.importance.get_param_importances(study, target=lambda t: t.values[index])


def param_importances(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[Any],
                      names: Sequence[str], *, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Per objective name: ``{"params": [{"param", "importance", "ci"}...]}`` sorted by importance,
    or ``{"reason": ...}`` where the evaluator cannot run (too few candidates)."""
    out: dict[str, Any] = {}
    # bare copies (params, distributions, values): what the evaluator reads, cheap to add again
    trials = [optuna.trial.create_trial(params=t.params, distributions=t.distributions, values=t.values)
              for t in trials]
    if len(trials) > LARGE_STUDY:
        resamples = min(resamples, 10)
    for i, name in enumerate(names):
        try:
            point = _importances(trials, directions, i)
        except Exception as exc:  # PED-ANOVA's own checks (too few trials, one value...)
            out[name] = {"reason": f"not computed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"}
            continue
        rng = random.Random(seed + i)
        draws: dict[str, list[float]] = {p: [] for p in point}
        for _ in range(resamples if len(trials) > 2 else 0):
            sample = [trials[rng.randrange(len(trials))] for _ in trials]
            try:
                imp = _importances(sample, directions, i)
            except Exception:
                continue
            for p in draws:
                draws[p].append(imp.get(p, 0.0))
        rows = []
        for p, v in sorted(point.items(), key=lambda kv: -kv[1]):
            d = draws[p]
            ci = [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if len(d) >= 10 else None
            rows.append({"param": p, "importance": float(v), "ci": ci})
        out[name] = {"evaluator": "PedAnovaImportanceEvaluator", "n": len(trials), "params": rows}
    return out
