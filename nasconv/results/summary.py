"""Plain-data views of a study for tables, JSON and the end-of-search summary."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from nasconv.results.noise import fill_intervals, resolution
from nasconv.results.rungs import at_rungs, rung_counts, study_front
from nasconv.storage import NasconvTables


def val_images_of(study: optuna.Study) -> int | None:
    """Validation images per evaluation in the study's settings (for results stored without them)."""
    return ((study.user_attrs.get("eval_config") or {}).get("train") or {}).get("val_images")


def trial_summary(t: optuna.trial.FrozenTrial, val_images: int | None = None) -> dict[str, Any]:
    """A trial as plain data: costs (exact), accuracy with its standard error and 95% interval,
    median latency with its 95% interval."""
    a = t.user_attrs
    row = {"trial": t.number, "ops": a.get("ops"), "arch_hash": a.get("arch_hash"), "macs": a.get("macs"),
           "params": a.get("params"), "latency_ms": a.get("latency_ms"), "latency_ci_ms": a.get("latency_ci_ms"),
           "accuracy": a.get("accuracy"), "accuracy_se": a.get("accuracy_se"), "accuracy_ci": a.get("accuracy_ci"),
           "val_images": a.get("val_images"), "score": a.get("score"), "values": list(t.values or []),
           "arch": a.get("arch"), "rung": a.get("rung", 0), "runs": a.get("runs", 1),
           "latency_source": a.get("latency_source")}
    return fill_intervals(row, val_images)


def baseline_summary(study: optuna.Study) -> dict[str, Any] | None:
    base = study.user_attrs.get("baseline")
    return fill_intervals(dict(base), val_images_of(study)) if base else None


def study_summary(study: optuna.Study, tables: NasconvTables) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    snaps = tables.snapshots(study.study_name)
    n_val = val_images_of(study)
    rows = tables.rung_results(study.study_name)
    views = at_rungs(complete, rows) if rows else []
    front = [trial_summary(t, n_val) for t in study_front(study, rows)]
    baseline = baseline_summary(study)
    fidelity = study.user_attrs.get("fidelity") or {"rungs": 1}
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
        "baseline": baseline,
        "front": front,
        "noise": resolution(front, baseline, study.user_attrs.get("objectives") or [],
                            study.user_attrs.get("latency_paired")),
        "fidelity": fidelity,
        # candidates by the highest rung they reached; the front stands at the highest of these
        "per_rung": rung_counts(views) if views else {},
        "rung": max((v.user_attrs["rung"] for v in views), default=0),
    }
