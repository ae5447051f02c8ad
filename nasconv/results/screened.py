"""Stage x family effects over the one-shot screened candidates, beside the stand-alone fit.

Screening scores hundreds or thousands of candidates on the supernet (the screen study,
:func:`nasconv.results.trust.screen_study_name`) where stand-alone training affords a few dozen.
The report fits the same additive model (:mod:`nasconv.results.effects`) over the screen study's
feasible completed trials (one per architecture), with the stand-alone fit's reference family per
stage so that a cell means the same in both fits, and compares them: of the effects resolved in
both, how many agree in sign. Its accuracy is the supernet's, not a trained network's: how far
that ranks as training does is the study's screening trust (:mod:`nasconv.results.trust`).

Parameter importance (PED-ANOVA) is not computed over the screened candidates: it is refitted on
every bootstrap resample and its cost grows with the number of trials (a report over thousands of
screened candidates must stay quick); the stand-alone candidates' importances are reported.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from nasconv.results.effects import family_of, fit_effects, stage_families
from nasconv.results.front import first_per_architecture

IMPORTANCE_NOTE = ("not computed over the screened candidates: PED-ANOVA is refitted on every bootstrap resample "
                   "and its cost grows with the trials; the importances above are the stand-alone candidates'")
#: the metric each effect objective reads on a screened trial, and its objective name (its value's index)
METRIC_OF = {"accuracy": ("accuracy", "accuracy"), "latency": ("latency_ms", "latency")}


def _feasible(t: optuna.trial.FrozenTrial) -> bool:
    named = getattr(t, "constraints", None)
    values = list(named.values()) if isinstance(named, dict) else list(named or [])
    return all(v <= 0 for v in values)


def screened_candidates(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The screen study's feasible completed trials with values, one per architecture."""
    kept = [t for t in trials if t.state == TrialState.COMPLETE and t.values and _feasible(t)
            and t.user_attrs.get("status") not in ("rejected", "failed")]
    return first_per_architecture(kept)


def families_of(t: optuna.trial.FrozenTrial, n_stages: int) -> list[str] | None:
    """One family per stage: from the trial's ``ops`` where stored, else from its parameters
    (``s<i>_family``, or ``s<i>_op`` whose label names the family); None when neither says."""
    if t.user_attrs.get("ops"):
        fams = stage_families(t.user_attrs["ops"])
        return fams if len(fams) == n_stages else None
    out = []
    for i in range(n_stages):
        if f"s{i}_family" in t.params:
            out.append(str(t.params[f"s{i}_family"]))
        elif f"s{i}_op" in t.params:
            out.append(family_of(str(t.params[f"s{i}_op"])))
        else:
            return None
    return out


def _shapes(trials: Sequence[optuna.trial.FrozenTrial], n_stages: int) -> np.ndarray:
    """Each stage's depth and width (the fit's covariates): from ``arch`` where every trial has
    it, else from the depth/width parameters (a stage that does not search them: constant, dropped)."""
    if all((t.user_attrs.get("arch") or {}).get("stages") for t in trials):
        return np.array([[float(st.get(k, 0)) for st in t.user_attrs["arch"]["stages"] for k in ("depth", "width")]
                         for t in trials])
    return np.array([[float(t.params.get(f"s{i}_{k}", 0)) for i in range(n_stages) for k in ("depth", "width")]
                     for t in trials])


def _value(t: optuna.trial.FrozenTrial, name: str, objectives: Sequence[str]) -> float | None:
    key, objective = METRIC_OF[name]
    if objective == "latency" and t.user_attrs.get("latency_stand_in"):
        return None  # screened on MACs in latency's place (no latency table): not a latency
    v = t.user_attrs.get(key)
    if v is None and objective in objectives and t.values and len(t.values) == len(objectives):
        v = t.values[list(objectives).index(objective)]
    return None if v is None else float(v)


def sign_agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Of the effects resolved in both fits (``EffectFit.to_dict()``), how many have the same sign."""
    ra = {(e["stage"], e["family"]): e["estimate"] for e in a.get("effects", []) if e.get("resolved")}
    rb = {(e["stage"], e["family"]): e["estimate"] for e in b.get("effects", []) if e.get("resolved")}
    both = sorted(set(ra) & set(rb))
    agree = sum(1 for k in both if (ra[k] > 0) == (rb[k] > 0))
    line = (f"{agree} of {len(both)} effects resolved in both fits agree in sign" if both
            else "no effect is resolved in both fits")
    return {"agree": agree, "both": len(both), "resolved_stand_alone": len(ra), "resolved_oneshot": len(rb),
            "disagree": [list(k) for k in both if (ra[k] > 0) != (rb[k] > 0)],
            "line": f"{line} ({len(ra)} resolved stand-alone, {len(rb)} one-shot)"}


def screened_effects(screen_trials: Sequence[optuna.trial.FrozenTrial], stand_alone: dict[str, Any],
                     objectives: Sequence[str], spec: dict[str, tuple[str, float, str, int]]) -> dict[str, Any]:
    """The effects over the screened candidates, shaped as the stand-alone ``stage_effects`` (its
    stages, families, references and front), with each objective's sign agreement against it.
    ``spec``: effect objective -> (key, scale, unit, +1 when larger is better), as the report's."""
    n_stages = len(stand_alone.get("stages") or [])
    cands, rows = [], []
    for t in screened_candidates(screen_trials):
        fams = families_of(t, n_stages)
        if fams is not None:
            cands.append(t)
            rows.append(fams)
    sources = Counter(str(t.user_attrs.get("latency_source")) for t in cands if t.user_attrs.get("latency_source"))
    shapes = _shapes(cands, n_stages) if cands else None
    references = list(stand_alone.get("references") or [])
    fits, agreement = {}, {}
    for name, (_key, scale, unit, better) in spec.items():
        if name not in METRIC_OF:
            continue
        vals = [_value(t, name, objectives) for t in cands]
        idx = [i for i, v in enumerate(vals) if v is not None]
        if not idx or not references:
            continue
        fit = fit_effects([rows[i] for i in idx], [vals[i] * scale for i in idx], references,
                          covariates=shapes[idx] if shapes is not None and shapes.ndim == 2 else None,
                          objective=name).to_dict()
        fit.update(unit=unit, better=better, key=METRIC_OF[name][0])
        fit["label"] = "one-shot: supernet accuracy" if name == "accuracy" else "one-shot candidates"
        if name == "latency" and sources:
            fit["source"] = sources.most_common(1)[0][0]
            fit["label"] = f"one-shot candidates, latency from {fit['source']}"
        fits[name] = fit
        other = (stand_alone.get("objectives") or {}).get(name)
        if other and not other.get("reason") and not fit.get("reason"):
            agreement[name] = sign_agreement(other, fit)
    counts = [Counter(r[s] for r in rows) for s in range(n_stages)]
    return {"label": f"one-shot: supernet accuracy, {len(cands)} candidates", "candidates": len(cands),
            "with_baseline": False, "rung": None, "stages": stand_alone.get("stages") or [],
            "families": stand_alone.get("families") or [], "choices": stand_alone.get("choices") or [],
            "references": references, "counts": [dict(c) for c in counts],
            "on_front": stand_alone.get("on_front") or [[] for _ in range(n_stages)],
            "objectives": fits, "agreement": agreement, "importance": IMPORTANCE_NOTE}
