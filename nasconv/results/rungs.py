"""Trials seen at the highest rung they reached (multi-fidelity), with repeated measurements pooled.

Optuna holds each architecture's rung-0 result (what the sampler was told); promotions and
repeats are in nasconv's own table (:class:`nasconv.storage.RungResult`). :func:`at_rungs` gives
each evaluated trial as a copy whose values and attributes are those of its highest rung, so that
the front, its hypervolume, tables and exports work on them unchanged. Candidates are compared
at equal rungs: :func:`rung_front` builds the front from the trials at the highest rung any
reached; the others are "not promoted" and never mixed into it.

Repeats (other seeds at one rung) are pooled: the accuracy and latency become the mean over the
runs with its standard error and 95% t-interval (:func:`nasconv.stats.mean_interval`).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Sequence

import optuna

from nasconv.results.front import EVALUATED, feasible_front, first_per_architecture
from nasconv.stats import mean_interval
from nasconv.storage import RungResult

#: metric key -> (its interval key, the range it lies in), pooled over repeats: a t-interval over
#: two or three runs is wide, and is cut to what the quantity can be (no negative latency)
POOLED = {"accuracy": ("accuracy_ci", (0.0, 1.0)), "latency_ms": ("latency_ci_ms", (0.0, float("inf")))}


def at_rungs(complete: Sequence[optuna.trial.FrozenTrial], rows: Sequence[RungResult]
             ) -> list[optuna.trial.FrozenTrial]:
    """The evaluated trials (one per architecture), each at its highest rung; a trial with no
    promotion or repeat is returned as it is, with ``rung`` 0."""
    by_trial: dict[int, list[RungResult]] = defaultdict(list)
    for r in rows:
        if r.values:  # a failed promotion or repeat has none
            by_trial[r.trial_number].append(r)
    out = []
    for t in first_per_architecture([t for t in complete if t.user_attrs.get("status") in EVALUATED]):
        mine = by_trial.get(t.number)
        if not mine:
            view = copy.copy(t)
            view.user_attrs = {**t.user_attrs, "rung": 0}
            out.append(view)
            continue
        top = max(r.rung for r in mine)
        runs = sorted((r for r in mine if r.rung == top), key=lambda r: r.repeat)
        out.append(_view(t, top, runs))
    return out


def _view(t: optuna.trial.FrozenTrial, rung: int, runs: list[RungResult]) -> optuna.trial.FrozenTrial:
    if rung == 0:  # rows at rung 0 are repeats (>= 1): the trial itself is run 0
        values = [list(t.values)] + [r.values for r in runs]
        metrics = [dict(t.user_attrs)] + [r.metrics for r in runs]
    else:
        values = [r.values for r in runs]
        metrics = [r.metrics for r in runs]
    view = copy.copy(t)
    attrs = {**t.user_attrs, **metrics[0], "rung": rung, "runs": len(values)}
    if len(values) > 1:
        view.values = [mean_interval([v[j] for v in values])[0] for j in range(len(values[0]))]
        for key, (ci_key, (low, high)) in POOLED.items():
            xs = [m[key] for m in metrics if m.get(key) is not None]
            if len(xs) == len(metrics):
                mean, se, ci = mean_interval(xs)
                attrs.update({key: mean, ci_key: [max(low, ci[0]), min(high, ci[1])]})
                if key == "accuracy":
                    attrs["accuracy_se"] = se
        scores = [m.get("score") for m in metrics]
        if None not in scores:  # the objective's value, as the table and plot read it
            attrs["score"] = mean_interval(scores)[0]
    else:
        view.values = list(values[0])
    view.user_attrs = attrs
    return view


def rung_front(complete: Sequence[optuna.trial.FrozenTrial], rows: Sequence[RungResult],
               directions: Sequence[optuna.study.StudyDirection]
               ) -> tuple[list[optuna.trial.FrozenTrial], int, list[optuna.trial.FrozenTrial]]:
    """(the feasible front at the highest rung reached, that rung, the trials below it)."""
    views = at_rungs(complete, rows)
    if not views:
        return [], 0, []
    top = max(v.user_attrs["rung"] for v in views)
    at_top = [v for v in views if v.user_attrs["rung"] == top]
    return feasible_front(at_top, directions), top, [v for v in views if v.user_attrs["rung"] < top]


def study_front(study: optuna.Study, rows: Sequence[RungResult] = ()) -> list[optuna.trial.FrozenTrial]:
    """Feasible, evaluated, Pareto-optimal trials, one per architecture (Optuna's best_trials
    honours constraints); with a multi-fidelity study's ``rows``, at the highest rung reached."""
    if rows:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return rung_front(complete, rows, study.directions)[0]
    return first_per_architecture([t for t in study.best_trials if t.user_attrs.get("status") in EVALUATED])


def rung_counts(views: Sequence[optuna.trial.FrozenTrial]) -> dict[int, int]:
    """How many candidates reached each rung (as their highest)."""
    out: dict[int, int] = defaultdict(int)
    for v in views:
        out[int(v.user_attrs.get("rung", 0))] += 1
    return dict(sorted(out.items()))
