"""The study report as plain data: which convolution where, with its evidence and uncertainty.

:func:`build_report` reads a stored study (finished or running: a snapshot) and gives what
``nasconv report`` renders as HTML (:mod:`nasconv.results.html`) and prints as JSON: the study's
settings and counts, the front with its intervals and what the noise resolves, the hypervolume
over trials (the final value with a 95% interval from the measurement noise), per stage and
operator family the effects on accuracy and latency (:mod:`nasconv.results.effects`), Optuna's
importances (:mod:`nasconv.results.importance`), the families on the front, and the sentences
those numbers support (:mod:`nasconv.results.claims`). A study searched with one-shot screening
also gets its screening trust (:mod:`nasconv.results.trust`) and the effects fitted over the
screened candidates beside the stand-alone ones (:mod:`nasconv.results.screened`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from nasconv.errors import NasconvError
from nasconv.results.claims import claims
from nasconv.results.effects import fit_effects, reference_families, stage_families
from nasconv.results.front import EVALUATED, first_per_architecture, hypervolume, losses
from nasconv.results.importance import param_importances
from nasconv.results.latency_effects import with_table_latency
from nasconv.results.noise import noise_line
from nasconv.results.screened import screened_effects
from nasconv.results.summary import study_summary, val_images_of
from nasconv.results.trust import screen_study, screening_trust
from nasconv.stats import se_from_interval
from nasconv.storage import NasconvTables

#: effect objectives: name -> (trial attribute, interval attribute, scale to the unit shown, unit,
#: +1 when a larger value is better)
EFFECT_OBJECTIVES = {"accuracy": ("accuracy", 100.0, "points", +1), "latency": ("latency_ms", 1.0, "ms", -1)}
#: parametric resamples of the final hypervolume
HV_RESAMPLES = 200


def build_report(study: optuna.Study, tables: NasconvTables, *, storage: str = "") -> dict[str, Any]:
    """The report of ``study``; :class:`NasconvError` (one line) when no trial has completed."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        states = Counter(t.state.name.lower() for t in trials)
        seen = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials"
        raise NasconvError(f"study {study.study_name!r} has no completed trial yet ({seen}); nothing to report")
    summary = study_summary(study, tables)
    candidates = first_per_architecture([t for t in complete if t.user_attrs.get("status") in EVALUATED])
    rows = tables.rung_results(study.study_name)
    hv_ci = hypervolume_interval(study, candidates)
    report = {
        "nasconv_report": 1,
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "study": study.study_name,
        "storage": storage,
        "settings": _settings(study, candidates),
        "counts": _counts(trials, rows),
        "time": _times(trials, rows),
        "front": summary["front"],
        "baseline": summary["baseline"],
        "noise": summary["noise"],
        "noise_line": noise_line(summary["noise"]) if summary["noise"] else None,
        "front_rung": summary["rung"],
        "hypervolume": summary["hypervolume"],
        "hypervolume_ci": hv_ci,
        "hypervolume_history": [{"trial": s.trial_number, "n_complete": s.n_complete, "hypervolume": s.hypervolume,
                                 "rung": s.rung} for s in tables.snapshots(study.study_name)],
        "effects": with_table_latency(study, tables, candidates, stage_effects(study, candidates, summary["front"]),
                                      storage=storage),
        "importance": param_importances(candidates, study.directions, metric_names(study))
        if len(candidates) >= 2 else {n: {"reason": "not computed: fewer than 2 evaluated candidates"}
                                      for n in metric_names(study)},
    }
    screen = screen_study(study)  # one-shot screening: its trust, and the effects over what it scored
    screened = screen.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if screen else []
    trust = screening_trust(complete, screened=len(screened) if screen else None)
    report["screening_trust"] = trust.to_dict() if trust else None
    report["screened_effects"] = screened_effects(screened, report["effects"], report["settings"]["objectives"] or [],
                                                  EFFECT_OBJECTIVES) if screen else None
    report["claims"] = claims(report)
    return report


def metric_names(study: optuna.Study) -> list[str]:
    names = study.metric_names
    if names:
        return list(names)
    return [{"latency": "latency_ms"}.get(o, o) for o in (study.user_attrs.get("objectives") or [])]


def _settings(study: optuna.Study, candidates: Sequence[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    a = study.user_attrs
    ev = a.get("eval_config") or {}
    train = ev.get("train") or {}
    seen = lambda key: sorted({str(t.user_attrs[key]) for t in candidates if t.user_attrs.get(key) is not None})  # noqa: E731
    return {"space": a.get("space"), "budget": a.get("budget"), "objectives": a.get("objectives"),
            "metric_names": metric_names(study), "sampler": a.get("sampler"), "seed": a.get("seed"),
            "data": ev.get("data"), "data_choice": a.get("data_choice"), "proxy": ev.get("proxy"),
            # what the search read (nasconv.data.task), and the metric: studies before them have none
            "data_read": (a.get("data") or {}).get("line"), "metric": ev.get("metric", "accuracy"),
            "train": {k: train.get(k) for k in ("train_images", "val_images", "epochs", "batch_size", "resolution",
                                                "max_depth", "width_factor", "precision")},
            "fidelity": a.get("fidelity") or {"rungs": 1},
            "latency": {"batch": ev.get("latency_batch"), "resolution": ev.get("latency_resolution")},
            "devices": seen("device_name") or seen("device"), "precisions": seen("precision"),
            "nodes": seen("node"), "nasconv_version": a.get("nasconv_version")}


def _counts(trials: Sequence[optuna.trial.FrozenTrial], rows: Sequence[Any]) -> dict[str, Any]:
    status = Counter(t.user_attrs.get("status") for t in trials if t.state == TrialState.COMPLETE)
    reasons = Counter(str(t.user_attrs.get("fail_reason") or "no reason stored")
                      for t in trials if t.state == TrialState.FAIL)
    done = [r for r in rows if r.values]
    return {"trials": len(trials), "evaluated": status.get("evaluated", 0), "cached": status.get("cached", 0),
            "rejected_over_budget": status.get("rejected", 0),
            "promoted": len({r.trial_number for r in done if r.rung > 0}),
            "repeats": sum(1 for r in done if r.repeat > 0),
            "failed": sum(reasons.values()), "failed_reasons": dict(reasons.most_common()),
            "running": sum(1 for t in trials if t.state == TrialState.RUNNING),
            "waiting": sum(1 for t in trials if t.state == TrialState.WAITING)}


def _times(trials: Sequence[optuna.trial.FrozenTrial], rows: Sequence[Any]) -> dict[str, Any]:
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    evals = [float(t.user_attrs["eval_time_s"]) for t in trials
             if t.user_attrs.get("status") == "evaluated" and t.user_attrs.get("eval_time_s") is not None]
    evals += [float(r.metrics["eval_time_s"]) for r in rows if r.values and r.metrics.get("eval_time_s") is not None]
    return {"first_start": min(starts).isoformat(timespec="seconds") if starts else None,
            "last_complete": max(ends).isoformat(timespec="seconds") if ends else None,
            "wall_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
            "evaluation_s": sum(evals), "evaluations": len(evals)}


def _constraints(t: optuna.trial.FrozenTrial) -> list[float]:
    named = getattr(t, "constraints", None)
    return list(named.values()) if isinstance(named, dict) else list(named or [])


def _value_se(t: optuna.trial.FrozenTrial, objective: str) -> float:
    a = t.user_attrs
    if objective == "accuracy" and a.get("accuracy_se") is not None and a.get("accuracy") is not None:
        return float(a["accuracy_se"])
    if objective == "latency" and a.get("latency_ci_ms"):
        return se_from_interval(*a["latency_ci_ms"])
    return 0.0  # exact (MACs, params) or no interval stored


def hypervolume_interval(study: optuna.Study, candidates: Sequence[optuna.trial.FrozenTrial], *,
                         resamples: int = HV_RESAMPLES, seed: int = 0) -> list[float] | None:
    """95% interval of the final hypervolume under measurement noise: each candidate's noisy
    objectives drawn from normals with their standard errors, the hypervolume recomputed."""
    ref = study.user_attrs.get("hv_reference")
    objectives = study.user_attrs.get("objectives") or []
    feasible = [t for t in candidates if t.values and all(c <= 0 for c in _constraints(t))]
    if not ref or not feasible or len(objectives) != len(study.directions):
        return None
    directions = [d.name.lower() for d in study.directions]
    base = losses(feasible, directions)
    se = np.array([[_value_se(t, o) for o in objectives] for t in feasible])
    if not se.any():
        return None
    rng = np.random.default_rng(seed)
    hvs = [hypervolume(base + rng.standard_normal(base.shape) * se, ref) for _ in range(resamples)]
    return [float(np.percentile(hvs, 2.5)), float(np.percentile(hvs, 97.5))]


def stage_effects(study: optuna.Study, candidates: Sequence[optuna.trial.FrozenTrial],
                  front: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per stage and family: counts, effects on accuracy and latency, presence on the front."""
    from nasconv.spaces import load_space

    kept = [dict(t.user_attrs) for t in candidates if t.user_attrs.get("ops")]
    ops = [stage_families(a["ops"]) for a in kept]
    space = None
    try:
        space = load_space(study.user_attrs.get("space") or "")
        choices = [sorted({o.name for o in st.ops}, key=[o.name for o in st.ops].index) for st in space.stages]
    except NasconvError:  # a user's space file no longer where it was: what the candidates used
        n = max((len(r) for r in ops), default=0)
        choices = [sorted({r[s] for r in ops if len(r) > s}) for s in range(n)]
    counts = [Counter(r[s] for r in ops) for s in range(len(choices))]
    base = study.user_attrs.get("baseline")
    flat = (study.user_attrs.get("fidelity") or {}).get("rungs", 1) == 1
    with_baseline = bool(base and flat and space and all("standard" in c for c in choices))
    if with_baseline:  # evaluated as the candidates were (flat study): one more observation of standard
        kept.append({**base, "arch": space.baseline().to_dict()})
        ops.append(["standard"] * len(choices))
    shapes = np.array([[float(st.get(k, 0)) for st in a["arch"].get("stages", []) for k in ("depth", "width")]
                       for a in kept]) if kept and all(a.get("arch") for a in kept) else None
    seen = [Counter(r[s] for r in ops) for s in range(len(choices))]
    # effects are measured against standard where a candidate (or the baseline) used it, else
    # against the stage's most used family
    references = [ref if seen[s].get(ref) else (seen[s].most_common(1)[0][0] if seen[s] else ref)
                  for s, ref in enumerate(reference_families(choices))] if choices else []
    families = sorted({f for c in choices for f in c}, key=lambda f: (f != "standard", f))
    on_front = [sorted({stage_families(f["ops"])[s] for f in front if f.get("ops")}) for s in range(len(choices))]
    proxy = (study.user_attrs.get("eval_config") or {}).get("proxy", "train")
    fits = {}
    for name, (key, scale, unit, better) in EFFECT_OBJECTIVES.items():
        if name == "accuracy" and proxy != "train":
            key, scale, unit = "score", 1.0, f"{proxy} score"
        idx = [i for i, a in enumerate(kept) if a.get(key) is not None]
        if not idx:
            continue
        fit = fit_effects([ops[i] for i in idx], [float(kept[i][key]) * scale for i in idx], references,
                          covariates=shapes[idx] if shapes is not None and shapes.ndim == 2 else None,
                          objective=name).to_dict()
        fit.update(unit=unit, better=better, key=key)
        fits[name] = fit
    return {"candidates": len(kept) - with_baseline, "with_baseline": with_baseline, "rung": 0,
            "val_images": val_images_of(study),
            "stages": [f"stage {s + 1}" for s in range(len(choices))], "families": families, "choices": choices,
            "references": references, "counts": [dict(c) for c in counts], "on_front": on_front,
            "objectives": fits}
