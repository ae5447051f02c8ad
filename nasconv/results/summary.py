"""Plain-data views of a study for tables, JSON and the end-of-search summary."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from nasconv.results.front import study_front
from nasconv.storage import NasconvTables


def trial_summary(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    a = t.user_attrs
    return {"trial": t.number, "ops": a.get("ops"), "arch_hash": a.get("arch_hash"), "macs": a.get("macs"),
            "params": a.get("params"), "latency_ms": a.get("latency_ms"), "accuracy": a.get("accuracy"),
            "score": a.get("score"), "values": list(t.values or []), "arch": a.get("arch")}


def study_summary(study: optuna.Study, tables: NasconvTables) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    snaps = tables.snapshots(study.study_name)
    return {
        "study": study.study_name,
        "space": study.user_attrs.get("space"),
        "budget": study.user_attrs.get("budget"),
        "objectives": study.user_attrs.get("objectives"),
        "evaluated": sum(1 for t in complete if t.user_attrs.get("status") in ("evaluated", "cached")),
        "rejected": sum(1 for t in complete if t.user_attrs.get("status") == "rejected"),
        "failed": sum(1 for t in trials if t.state == TrialState.FAIL),
        "running": sum(1 for t in trials if t.state == TrialState.RUNNING),
        "hypervolume": snaps[-1].hypervolume if snaps else 0.0,
        "baseline": study.user_attrs.get("baseline"),
        "front": [trial_summary(t) for t in study_front(study)],
    }
