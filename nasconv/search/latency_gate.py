"""The per-device latency model in a search (``--latency measure|predict|predict+remeasure``).

With a lookup table for the search's device setting (:mod:`nasconv.latency`), a latency budget is
checked before anything is built, as a MACs budget is: a candidate whose predicted 95% interval
lies wholly above the limit is rejected untrained (the interval is the margin: with r its relative
half-width, a trained candidate is predicted under budget / (1 - r), and, 95% of the time, measures
under budget x (1 + r) / (1 - r)). ``measure`` (the
default) still times every trained candidate; ``predict`` uses the prediction as the latency
objective and times only candidates whose interval straddles the limit; ``predict+remeasure``
also times each promotion and repeat (multi-fidelity) and the final front's members not timed
yet, so that the reported front stands on measurements. Without
a table, ``measure`` is the search it always was and ``predict`` is refused in one line that says
how to make the table. Before a table is used, a few of its calibration networks are timed again
and the predictions scaled by the device's drift since profiling (:mod:`nasconv.latency.drift`).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import orm

from nasconv.arch import ArchSpec
from nasconv.budget import Budget
from nasconv.device_lock import DeviceGate
from nasconv.errors import NasconvError, UsageError
from nasconv.evaluate import EvalConfig
from nasconv.latency import (
    DRIFT_NETWORKS,
    DRIFT_TOLERANCE,
    LatencyModel,
    LatencyPrediction,
    LatencyTable,
    Repeats,
    corrected,
    current_setting,
    load_model,
    measure_network,
)
from nasconv.profile import resolve_device
from nasconv.search.config import SearchConfig
from nasconv.spaces import SearchSpace
from nasconv.storage import NasconvTables
from nasconv.storage.tables import StudyAttrRow

#: a measured latency outside its prediction's interval is timed this many more times
RETIMES = 2


@dataclass(frozen=True)
class Decision:
    #: why the candidate is over budget by its prediction (None: it is not)
    reject: str | None
    #: whether its evaluation must time it
    measure: bool
    prediction: LatencyPrediction | None


def search_threads(eval_cfg: EvalConfig, cpus_per_worker: int | None, workers: int) -> int:
    """The torch threads a worker times latency with (as the runners set them)."""
    return eval_cfg.latency_threads or cpus_per_worker or max(1, (os.cpu_count() or 1) // workers)


class LatencyGate:
    def __init__(self, mode: str, model: LatencyModel | None, budget_ms: float | None, device: str = "cpu",
                 max_time_s: float = 3.0) -> None:
        self.mode, self.model, self.budget_ms, self.device = mode, model, budget_ms, device
        #: the time cap of one re-measurement (the evaluator's ``latency_max_time_s``)
        self.max_time_s = max_time_s

    @classmethod
    def for_search(cls, cfg: SearchConfig, space: SearchSpace, budget: Budget, tables: NasconvTables) -> "LatencyGate":
        """The gate of a search; :class:`~nasconv.latency.LatencyTableError` when ``predict`` is asked
        for and the table cannot give a model (a ``measure`` search then simply runs without one)."""
        mode, eval_cfg = cfg.latency, cfg.eval
        if eval_cfg.latency_resolution not in (None, space.resolution):
            if mode != "measure":
                raise UsageError(f"--latency {mode} predicts at the space's resolution ({space.resolution}); "
                                 f"the latency is asked at {eval_cfg.latency_resolution}")
            return cls(mode, None, budget.latency_ms, eval_cfg.device)
        try:
            threads = search_threads(eval_cfg, cfg.cpus_per_worker, cfg.workers)
            setting = current_setting(eval_cfg.device, threads=threads, batch=eval_cfg.latency_batch)
            table = LatencyTable(tables, cfg.storage)
            model = load_model(table, space, setting)
        except NasconvError:  # no table, or no such device on the driver (a cluster's GPUs)
            if mode != "measure":
                raise
            model = None
        if model is not None and (budget.latency_ms is not None or mode != "measure"):
            model, drift = corrected(model, table, eval_cfg.device)
            if drift is not None and abs(drift - 1) > DRIFT_TOLERANCE:
                print(f"nasconv: this device times {drift:.2f}x what it did when its latency table was made "
                      f"({DRIFT_NETWORKS} of the table's networks timed again); the predictions are scaled by that",
                      file=sys.stderr)
        return cls(mode, model, budget.latency_ms, eval_cfg.device, eval_cfg.latency_max_time_s)

    @property
    def predicts(self) -> bool:
        return self.mode != "measure"

    def decide(self, arch: ArchSpec) -> Decision:
        if self.model is None:
            return Decision(None, True, None)
        p = self.model.predict(arch)
        if self.budget_ms is not None and p.low_ms > self.budget_ms:
            return Decision(f"predicted {p.latency_ms:.3g} ms (95% interval {p.low_ms:.3g}-{p.high_ms:.3g}) > "
                            f"{self.budget_ms:g} ms", False, p)
        near = self.budget_ms is not None and p.high_ms > self.budget_ms
        return Decision(None, not self.predicts or near, p)

    def eval_config(self, cfg: EvalConfig, decision: Decision) -> EvalConfig:
        """What the candidate's evaluation runs with: latency timed only where the decision says."""
        return replace(cfg, latency=True) if self.predicts and decision.measure else cfg

    @staticmethod
    def fill(metrics: dict[str, Any], prediction: LatencyPrediction | None) -> dict[str, Any]:
        """``metrics`` with the prediction where no latency was measured (and beside one that was)."""
        if prediction is None:
            return metrics
        out = {**metrics, "latency_predicted_ms": prediction.latency_ms,
               "latency_predicted_ci_ms": [prediction.low_ms, prediction.high_ms]}
        if metrics.get("latency_ms") is None:
            out.update(latency_ms=prediction.latency_ms, latency_ci_ms=[prediction.low_ms, prediction.high_ms],
                       latency_source="predicted")
        else:
            out["latency_source"] = "measured"
        return out

    def remeasure(self, arch: ArchSpec) -> dict[str, Any]:
        """Time ``arch`` in this process, as the table's whole networks were (``predict+remeasure``),
        with the device held as an evaluation's timing holds it (:mod:`nasconv.device_lock`)."""
        if self.model is None:
            raise UsageError("re-measuring needs the latency model")
        with DeviceGate(resolve_device(self.device)) as gate, gate.timing():
            res = measure_network(arch, self.model.setting, self.device, Repeats(max_time_s=self.max_time_s))
        return {"latency_ms": res.median_ms, "latency_ci_ms": [res.ci_low_ms, res.ci_high_ms]}

    def settle(self, metrics: dict[str, Any], prediction: LatencyPrediction | None,
               arch: dict[str, Any] | None) -> dict[str, Any]:
        """:meth:`fill`, and a measured latency outside the prediction's 95% interval timed
        :data:`RETIMES` more times in this process and the middle of the timings kept (all of them
        in ``latency_timings_ms``); ``arch`` is the architecture's dict. One timing on a shared
        machine can land in another process's burst: in a repeat of ``benchmarks/latency_model.py``'s
        latency-budget search here (2026-12-05) one trained candidate timed 1.75x its prediction,
        where a second look costs a second or two."""
        out = self.fill(metrics, prediction)
        ms = out.get("latency_ms")
        if (prediction is None or self.model is None or arch is None or out.get("latency_source") != "measured"
                or ms is None or prediction.low_ms <= ms <= prediction.high_ms):
            return out
        timings = [{"latency_ms": ms, "latency_ci_ms": out.get("latency_ci_ms")}]
        spec = ArchSpec.from_dict(arch)
        timings += [self.remeasure(spec) for _ in range(RETIMES)]
        middle = sorted(timings, key=lambda t: t["latency_ms"])[len(timings) // 2]
        return {**out, **middle, "latency_timings_ms": [t["latency_ms"] for t in timings]}

    def remeasure_front(self, front: list[dict[str, Any]], tables: NasconvTables, study_name: str) -> tuple[int, int]:
        """Time each front member (once per study: the measurement is kept as a study attribute and
        reused), put it in the member's row with the prediction beside it, and take off the front
        the members it puts over the latency budget. Returns (re-measured, taken off)."""
        if self.model is None:
            return 0, 0
        kept, dropped = [], 0
        for row in front:
            if row.get("latency_source") != "measured":  # not timed at a promotion already
                arch = ArchSpec.from_dict(row["arch"])
                key = f"remeasured_latency:{arch.arch_hash}"
                measured = _stored(tables, study_name, key) or tables.setdefault(study_name, key, self.remeasure(arch))
                row.update(latency_predicted_ms=row.get("latency_ms"), latency_predicted_ci_ms=row.get("latency_ci_ms"),
                           latency_ms=measured["latency_ms"], latency_ci_ms=measured["latency_ci_ms"],
                           latency_source="remeasured")
            if self.budget_ms is not None and row["latency_ms"] > self.budget_ms:
                dropped += 1
            else:
                kept.append(row)
        n = len(front)
        front[:] = kept
        return n, dropped


def _stored(tables: NasconvTables, study_name: str, key: str) -> dict[str, Any] | None:
    with orm.Session(tables.engine) as s:
        row = s.get(StudyAttrRow, (study_name, key))
        return json.loads(row.value_json) if row else None
