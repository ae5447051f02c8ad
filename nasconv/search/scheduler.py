"""The driver's multi-fidelity part: promotions and repeats, claimed in the study database, run on
the driver's runner, stored in nasconv's rung table.

Each architecture is one Optuna trial, told its rung-0 values once (the sampler learns from
results of one fidelity only, so they compare). A promotion or a repeat is not a trial: it is
claimed in ``nasconv_rung_results`` (so that two drivers never run the same one, and a dead
driver's claim is taken over), evaluated with its rung's settings (their own evaluation-cache
key), cached, then recorded there. A driver killed between the cached result and the record
leaves a claim and a cache entry: the next driver takes the claim over, finds the result in the
cache and records it once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import optuna

import nasconv._optuna as _optuna
from nasconv.arch import ArchSpec
from nasconv.evaluate import EvalConfig
from nasconv.faults import fault_point
from nasconv.results import at_rungs, rung_front
from nasconv.search.fidelity import Fidelity
from nasconv.search.liveness import driver_dead
from nasconv.search.objectives import TRIAL_ATTRS, objective_values
from nasconv.search.promotion import next_promotion, penalties, rung_values
from nasconv.storage import NasconvTables, RungResult

#: what a promotion takes over from the trial's rung-0 result (latency is measured there only)
CARRIED = ("latency_ms", "latency_ci_ms", "latency_iqr_ms", "latency_rel_iqr", "latency_capped", "latency_batch",
           "latency_resolution", "params", "macs")

#: what a rung result shows on its trial's page in optuna-dashboard
SHOWN = ("accuracy", "accuracy_ci", "val_images", "train_images", "latency_ms", "latency_ci_ms", "train_time_s",
         "settings_key")


@dataclass(frozen=True)
class RungJob:
    trial_number: int
    rung: int
    repeat: int
    arch_hash: str
    settings_key: str

    @property
    def key(self) -> str:
        return f"{self.arch_hash}@r{self.rung}.{self.repeat}"


def is_rung_key(key: Any) -> bool:
    """Whether a runner's job key is a promotion's or a repeat's (a trial's is its arch hash)."""
    return isinstance(key, str) and "@r" in key


class RungScheduler:
    def __init__(self, tables: NasconvTables, study_name: str, space_name: str, fid: Fidelity, eval_cfg: EvalConfig,
                 objectives: Sequence[str], directions: Sequence[str], driver_id: str,
                 storage: Any = None, remeasure: bool = False) -> None:
        self.tables, self.study_name, self.space_name = tables, study_name, space_name
        #: ``--latency predict+remeasure``: a promotion times the candidate on the device, so that a
        #: front at a higher rung stands on measured latencies (rung 0 used the prediction)
        self.remeasure = remeasure
        self.fid, self.eval_cfg = fid, eval_cfg
        self.objectives, self.directions, self.driver_id = list(objectives), list(directions), driver_id
        self.running: dict[str, RungJob] = {}
        self.storage = storage  # where each rung result is also added to its trial's attributes
        self._base: dict[str, dict[str, Any]] = {}  # job key -> its trial's (rung-0) attributes
        self.promoted = 0
        self.rows: list[RungResult] = []

    # --- reading ------------------------------------------------------------------------------
    def refresh(self) -> list[RungResult]:
        self.rows = self.tables.rung_results(self.study_name) if self.fid.tracked else []
        return self.rows

    def front(self, complete: Sequence[optuna.trial.FrozenTrial], study_directions: Sequence[Any]
              ) -> tuple[list[optuna.trial.FrozenTrial], int]:
        front, rung, _ = rung_front(complete, self.refresh(), study_directions)
        return front, rung

    # --- deciding -------------------------------------------------------------------------------
    def _busy(self) -> set[tuple[int, int, int]]:
        """Promotions and repeats not to start: claimed by a live driver, running here, or failed."""
        claims = {(t, r, k) for t, r, k, who in self.tables.rung_claims(self.study_name)
                  if who is not None and not driver_dead(who)}
        failed = {(r.trial_number, r.rung, r.repeat) for r in self.rows if not r.values}
        return claims | failed | {(j.trial_number, j.rung, j.repeat) for j in self.running.values()}

    def next_job(self, complete: Sequence[optuna.trial.FrozenTrial], study_directions: Sequence[Any], *,
                 repeats_now: bool) -> RungJob | None:
        """The next promotion (or, once ``repeats_now``, the next repeat of a top-rung front member)
        that this driver has claimed; None when none is due."""
        if not self.fid.tracked:
            return None
        self.refresh()
        busy = self._busy()
        by_number = {t.number: t for t in complete}
        values, penalty = rung_values(complete, self.rows), penalties(complete)
        while True:
            pick = None
            if self.fid.rungs > 1:
                nxt = next_promotion(values, self.directions, self.fid, {(t, r) for t, r, k in busy if k == 0},
                                     penalty)
                if nxt is not None:
                    pick = (nxt[0], nxt[1], 0)
            if pick is None and repeats_now and self.fid.repeats:
                pick = self._next_repeat(complete, study_directions, busy)
            if pick is None:
                return None
            t = by_number[pick[0]]
            job = RungJob(pick[0], pick[1], pick[2], t.user_attrs["arch_hash"],
                          self._config(pick[1], pick[2]).settings_key())
            if self.tables.claim_rung(self.study_name, job.trial_number, job.rung, job.repeat, job.arch_hash,
                                      self.driver_id, dead=driver_dead):
                self._base[job.key] = {**t.user_attrs, "_trial_id": _optuna.trial_id(t)}
                return job
            busy.add(pick)  # another driver holds it: look further

    def _next_repeat(self, complete: Sequence[optuna.trial.FrozenTrial], study_directions: Sequence[Any],
                     busy: set[tuple[int, int, int]]) -> tuple[int, int, int] | None:
        front, rung, _ = rung_front(complete, self.rows, study_directions)
        if rung != self.fid.top:
            return None  # repeats are for the final front: none has reached the top rung yet
        done = {(r.trial_number, r.rung, r.repeat) for r in self.rows}  # failed ones too
        for t in sorted(front, key=lambda t: t.number):
            for k in range(1, self.fid.repeats + 1):
                if (t.number, rung, k) not in done and (t.number, rung, k) not in busy:
                    return t.number, rung, k
        return None

    def _config(self, rung: int, repeat: int) -> EvalConfig:
        cfg = self.fid.rung_config(self.eval_cfg, rung, repeat)
        return replace(cfg, latency=True) if self.remeasure else cfg

    def config_of(self, job: RungJob) -> EvalConfig:
        return self._config(job.rung, job.repeat)

    # --- running --------------------------------------------------------------------------------
    def start(self, job: RungJob, arch: ArchSpec, runner: Any, run_job: Any) -> bool:
        """Submit ``job``; True when its result came from the evaluation cache (recorded at once)."""
        cached = self.tables.get_cached(job.settings_key, job.arch_hash)
        if cached is not None:
            self.record(job, cached)
            return True
        self.running[job.key] = job
        runner.submit(job.key, run_job, arch.to_dict(), self.config_of(job).to_dict())
        return False

    def owns(self, key: Any) -> bool:
        return key in self.running

    def finish(self, key: str, metrics: dict[str, Any] | None, error: str | None) -> None:
        job = self.running.pop(key)
        if error is not None or metrics is None:
            self._base.pop(key, None)
            self._record_failure(job, error or "no metrics")
            return
        metrics.pop("weights", None)  # kept weights are rung 0's (export --weights)
        self.tables.put_cached(job.settings_key, job.arch_hash, self.space_name, metrics)
        fault_point("before_rung_record", job.key)
        self.record(job, metrics)

    def record(self, job: RungJob, metrics: dict[str, Any]) -> None:
        merged = {k: metrics[k] for k in TRIAL_ATTRS if metrics.get(k) is not None}
        base = self._base.pop(job.key, {})
        # exact costs are the trial's; a promotion measures no latency (unless predict+remeasure):
        # the trial's rung-0 one holds
        carried = CARRIED if job.repeat == 0 else ("params", "macs")
        merged.update({k: base[k] for k in carried if base.get(k) is not None and k not in merged})
        if metrics.get("latency_ms") is not None and base.get("latency_predicted_ms") is not None:
            # timed at this promotion (predict+remeasure): the rung-0 prediction kept beside it
            merged.update(latency_source="measured", latency_predicted_ms=base["latency_predicted_ms"],
                          latency_predicted_ci_ms=base.get("latency_predicted_ci_ms"))
        merged.update({"rung": job.rung, "repeat": job.repeat, "settings_key": job.settings_key,
                       "train_images": self.config_of(job).train.train_images})
        values = objective_values(merged, self.objectives)
        if values is None:
            self._record_failure(job, "the evaluation gave no finite value for every objective")
            return
        if self.tables.record_rung(self.study_name, job.trial_number, job.rung, job.repeat, job.arch_hash,
                                   values, merged):
            self.promoted += 1
            if self.storage is not None and base.get("_trial_id") is not None:
                # for optuna-dashboard's trial page: the table above is what nasconv reads
                name = f"rung{job.rung}" + (f"_repeat{job.repeat}" if job.repeat else "")
                shown = {k: merged.get(k) for k in SHOWN if merged.get(k) is not None}
                _optuna.annotate_finished_trial(self.storage, base["_trial_id"],
                                                {name: shown, "highest_rung": job.rung})
        fault_point("after_rung_record", job.key)

    def _record_failure(self, job: RungJob, reason: str) -> None:
        """A failed promotion or repeat: stored as failed (its claim kept with the reason), so that
        it is not tried again in a loop."""
        self.tables.record_rung(self.study_name, job.trial_number, job.rung, job.repeat, job.arch_hash,
                                [], {"failed": reason[:300]})

    def abandon(self) -> None:
        """This driver stops: its claims without results are dropped (another driver may run them)."""
        self.running.clear()
        self._base.clear()
        self.tables.release_claims(self.study_name, self.driver_id)

    def views(self, complete: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
        return at_rungs(complete, self.refresh())
