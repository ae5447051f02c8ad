"""Optuna's parameter importances per objective (PED-ANOVA, Optuna 5's default), with bootstrap intervals.

Importances come from the evaluated candidates only (a candidate rejected over budget carries
placeholder values, not measurements), one per architecture. The 95% interval of each importance
comes from resamples of those candidates (with replacement). Their 2.5-97.5 percentile range alone
can miss the estimate it qualifies: PED-ANOVA on a resample (with its duplicated candidates) is
biased, and one study gave 0.079 with a percentile range of [0.017, 0.067]. The interval is
therefore that range moved so that the resamples' median falls on the estimate (the spread of the
resamples around their centre, put around the estimate; clipped to [0, 1]): it contains the
estimate by construction, and the resamples' median is kept beside it (``bootstrap_median``) so
that the bias is visible.
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


def recentred_interval(estimate: float, draws: Sequence[float], *, low: float = 0.0, high: float = 1.0
                       ) -> list[float]:
    """The 95% percentile range of ``draws`` moved so that their median falls on ``estimate``,
    clipped to [``low``, ``high``]; it always contains ``estimate`` (itself clipped)."""
    q_lo, med, q_hi = (float(v) for v in np.percentile(np.asarray(draws, dtype=float), [2.5, 50.0, 97.5]))
    est = min(max(float(estimate), low), high)
    return [min(max(est - (med - q_lo), low), est), max(min(est + (q_hi - med), high), est)]


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
            enough = len(d) >= 10
            rows.append({"param": p, "importance": float(v), "ci": recentred_interval(v, d) if enough else None,
                         "bootstrap_median": float(np.median(d)) if enough else None})
        out[name] = {"evaluator": "PedAnovaImportanceEvaluator", "n": len(trials), "params": rows,
                     "interval": f"95%: the percentile range of {resamples} bootstrap resamples, moved so that "
                                 "their median falls on the estimate"}
    return out
