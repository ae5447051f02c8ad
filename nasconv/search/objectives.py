"""What is told to Optuna for a candidate: objective values, budget constraints, placeholder values
for a candidate rejected over budget, and the fixed hypervolume reference point of a study."""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

import numpy as np
import optuna

from nasconv.budget import Budget
from nasconv.results import EVALUATED
from nasconv.search.config import OBJECTIVES

#: what each evaluated trial carries as user attributes (besides arch, status, ...)
TRIAL_ATTRS = ("accuracy", "accuracy_se", "accuracy_ci", "val_images", "score", "proxy", "latency_ms", "latency_ci_ms",
               "latency_iqr_ms", "latency_rel_iqr", "latency_capped", "latency_isolated", "latency_wait_s",
               "precision", "latency_batch", "latency_resolution", "device", "device_name", "threads", "train_time_s",
               "eval_time_s", "diverged", "diverged_step", "steps", "torch_version", "nasconv_version", "node",
               "node_ip", "ray_node_id", "worker_pid", "worker_span", "gpu_ids", "cuda_visible_devices",
               "simulated_cuda", "settings_key", "latency_source", "latency_predicted_ms", "latency_predicted_ci_ms",
               "latency_timings_ms", "metric", "class_recall", "class_images", "plain_accuracy", "plain_accuracy_se",
               "balanced_accuracy", "balanced_accuracy_se", "data_classes")


def metric_names(objectives: Sequence[str], proxy: str = "train") -> list[str]:
    """The names Optuna (and optuna-dashboard) show for the objectives' values: ``accuracy``
    (a zero-cost proxy's ``<proxy>_score``), ``latency_ms``, ``macs``, ``params``."""
    names = {"accuracy": "accuracy" if proxy == "train" else f"{proxy}_score", "latency": "latency_ms"}
    return [names.get(o, o) for o in objectives]


def objective_values(metrics: dict[str, Any], objectives: Sequence[str]) -> list[float] | None:
    """The objectives' values from an evaluation's metrics; None when one is missing or not finite."""
    vals = []
    for o in objectives:
        v = metrics.get(OBJECTIVES[o][0])
        if v is None or not math.isfinite(float(v)):
            return None
        vals.append(float(v))
    return vals


def placeholder_values(objectives: Sequence[str], macs: int, params: int, complete: list[optuna.trial.FrozenTrial],
                       proxy: str) -> list[float]:
    """Objective values for an over-budget candidate that is never evaluated: pessimistic
    estimates (the sampler ranks infeasible trials by their constraint violation first)."""
    done = [t for t in complete if t.user_attrs.get("status") in EVALUATED]
    out = []
    for o in objectives:
        if o == "macs":
            out.append(float(macs))
        elif o == "params":
            out.append(float(params))
        elif o == "accuracy":
            scores = [t.user_attrs["score"] for t in done if t.user_attrs.get("score") is not None]
            out.append(0.0 if proxy == "train" or not scores else min(scores) - 1.0)
        else:  # latency: scale the observed ms-per-MAC to this candidate
            ratios = [t.user_attrs["latency_ms"] / t.user_attrs["macs"] for t in done
                      if t.user_attrs.get("latency_ms")]
            out.append(macs * (statistics.median(ratios) if ratios else 5e-8))
    return out


def set_constraints(trial: optuna.trial.Trial, budget: Budget, macs: int, params: int,
                    latency_ms: float | None) -> list[float]:
    """The budget's constraint values (<= 0 is feasible), set on the trial by name."""
    vals = budget.constraints(macs=macs, params=params, latency_ms=latency_ms)
    keys = [k for k, v in (("macs", budget.macs), ("params", budget.params), ("latency", budget.latency_ms))
            if v is not None]
    for k, v in zip(keys, vals):
        trial.set_constraint(k, v)
    return vals


def reference_point(objectives: Sequence[str], front_losses: np.ndarray, *, proxy: str, budget: Budget,
                    bounds: dict[str, int], baseline: dict[str, Any]) -> list[float]:
    """Fixed once per study (stored), so that hypervolumes over time are comparable."""
    ref = []
    for j, o in enumerate(objectives):
        if o == "accuracy":
            ref.append(0.0 if proxy == "train" else float(front_losses[:, j].max() + 1.0))
        elif o == "latency":
            worst = max(float(front_losses[:, j].max()), float(baseline.get("latency_ms") or 0))
            ref.append(2.0 * worst)
        elif o == "macs":
            ref.append(float(budget.macs or bounds["max_macs"]) * 1.0001)
        else:
            ref.append(float(budget.params or bounds["max_params"]) * 1.0001)
    return ref
