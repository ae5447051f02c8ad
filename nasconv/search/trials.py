"""One trial's way through the search, a part of :class:`~nasconv.search.driver.SearchDriver`:
asked, its architecture suggested and costed, rejected when over budget (told as infeasible),
served from the evaluation cache or submitted to the runner, and told when its evaluation comes
back; failed (and queued again) when the driver stops first.

The driver's loop (``driver``) decides when to ask, promote and wait; this mixin is what happens
to each trial, from its claim of one of the study's ``--trials`` slots (atomic across drivers).
It reads the driver's state (study, storage, tables, heartbeat, latency gate) and keeps two maps
of its own: ``jobs`` (architecture hash -> the trials waiting for its evaluation) and ``job_arch``.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

import nasconv._optuna as _optuna
from nasconv.arch import ArchSpec
from nasconv.cost import estimate_cost
from nasconv.faults import fault_point
from nasconv.results import EVALUATED
from nasconv.results.notes import save_trial_note, trial_note
from nasconv.search.liveness import carried_attrs, driver_dead, trial_finished
from nasconv.search.objectives import TRIAL_ATTRS, objective_values, placeholder_values, set_constraints
from nasconv.search.params import suggest_arch
from nasconv.search.samplers import make_sampler
from nasconv.storage import StudyLock
from nasconv.storage.weights import adopt_weights, save_weights


class TrialFlow:
    """Ask, propose, tell and fail trials (mixed into the search driver, whose state it uses)."""

    jobs: dict[str, list[optuna.trial.Trial]]  # arch hash -> trials waiting for it
    job_arch: dict[str, ArchSpec]
    predicted: dict[str, Any]  # arch hash -> its latency decision (nasconv.search.latency_gate)
    counts: dict[str, int]

    def _pending(self) -> int:
        """Trials waiting for an evaluation (several may wait for one architecture)."""
        return sum(len(ts) for ts in self.jobs.values())

    def _reseed(self, trial_number: int) -> None:
        """Called with this driver's first trial, before it samples anything.

        Trial 0 of a study samples with --seed itself (reproducible). Any other first trial (a
        resumed study, a second driver) gets a seed derived from its number, unique in the study:
        with --seed alone, a resumed or a concurrent driver would replay the first one's proposals,
        and those would only come back from the cache.
        """
        if trial_number:
            seed = int(np.random.SeedSequence([self.cfg.seed, trial_number]).generate_state(1)[0])
            self.study.sampler = make_sampler(self.sampler, seed, len(self.cfg.objectives))

    def _claim(self) -> tuple[optuna.trial.Trial | None, int]:
        """A new trial when the study has room for one (None when not), and how many trials the
        study holds evaluated.

        ``--trials`` is the study's total over every driver: the room is what its evaluated trials
        and its trials in flight (this driver's and every other live driver's) leave. Counted and
        asked under the study's claim lock (:class:`~nasconv.storage.StudyLock`): two drivers that
        counted before either asked would both take the last slot.
        """
        lock = getattr(self, "_claim_lock", None)
        if lock is None:
            lock = self._claim_lock = StudyLock(self.tables, self.study_name)
        fault_point("before_claim", self.driver_id)
        with lock.held():
            evaluated, in_flight = self._slots_taken()
            fault_point("claim_counted", f"{evaluated}+{in_flight}")
            if evaluated + in_flight >= self.cfg.trials:
                return None, evaluated
            return self.study.ask(), evaluated

    def _slots_taken(self) -> tuple[int, int]:
        """(evaluated trials, trials in flight) of the study, every driver's: a RUNNING trial takes
        a slot unless its driver is known to have died (recover() fails it and queues its
        parameters again)."""
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        evaluated = sum(1 for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("status") in EVALUATED)
        in_flight = sum(1 for t in trials if t.state == TrialState.RUNNING
                        and not driver_dead(str(t.user_attrs.get("driver", ""))))
        return evaluated, in_flight

    def _ask_one(self, runner: Any, trial: optuna.trial.Trial) -> str:
        """Propose ``trial`` (from :meth:`_claim`): rejected, cached, attached to an evaluation
        under way, or submitted."""
        try:
            return self._propose(runner, trial)
        except Exception as exc:
            self.heartbeat.remove(_optuna.trial_id(trial))
            for key, ts in list(self.jobs.items()):
                if trial in ts:
                    ts.remove(trial)
                if not ts:
                    del self.jobs[key]
            if isinstance(exc, (optuna.exceptions.UpdateFinishedTrialError, ValueError)) \
                    and trial_finished(self.storage, trial):
                return "lost"  # another driver took this one for dead and failed the trial: ask again
            # Not left RUNNING behind the error.
            with contextlib.suppress(Exception):
                trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {str(exc).strip()[:200]}")
                self.study.tell(trial, state=TrialState.FAIL)
            raise

    def _propose(self, runner: Any, trial: optuna.trial.Trial) -> str:
        # Marked and beating from the start: if this driver dies from here on, the next one
        # recognises the trial as orphaned (by pid on this host, by heartbeat anywhere).
        trial.set_user_attr("driver", self.driver_id)
        self.heartbeat.add(_optuna.trial_id(trial))
        fault_point("after_ask", trial.number)
        if not self._seeded:
            self._seeded = True
            self._reseed(trial.number)
        arch = suggest_arch(trial, self.space, ordinal=self.ordinal, by_family=self.by_family)
        attrs, decision = self._costed(self.study, trial, arch)
        if decision is None:
            self.heartbeat.remove(_optuna.trial_id(trial))
            self.counts["rejected"] += 1
            return "rejected"
        _optuna.set_user_attrs(trial, attrs)
        cached = self.tables.get_cached(self.settings_key, arch.arch_hash)
        if cached is not None:
            self.heartbeat.remove(_optuna.trial_id(trial))
            if self.cfg.keep_weights and adopt_weights(self.cfg.storage, self.study_name, self.settings_key,
                                                       arch.arch_hash) is None:
                print(f"nasconv: warning: trial {trial.number} ({arch.arch_hash}) was served from the evaluation "
                      "cache of an evaluation that kept no weights: none are kept for it", file=sys.stderr)
            if self._tell_metrics(trial, cached, status="cached"):
                self.counts["cached"] += 1
            return "cached"
        if arch.arch_hash in self.jobs:  # the same architecture is already being evaluated
            self.jobs[arch.arch_hash].append(trial)
            return "attached"
        self.jobs[arch.arch_hash] = [trial]
        self.job_arch[arch.arch_hash] = arch
        eval_cfg = self.latency.eval_config(self.eval0, decision)  # timed or not
        runner.submit(arch.arch_hash, self.job, arch.to_dict(), eval_cfg.to_dict())
        return "submitted"

    def _costed(self, study: optuna.Study, trial: optuna.trial.Trial, arch: ArchSpec) -> tuple[dict[str, Any], Any]:
        """``arch``'s exact cost (as trial attributes) and its latency decision; over budget, the
        trial is told to ``study`` as infeasible (constraints, placeholder values) and the decision
        is None. The main study's and the one-shot screening study's trials go through this."""
        cost = estimate_cost(arch)
        attrs = {"arch": arch.to_dict(), "arch_hash": arch.arch_hash, "ops": arch.ops_label(),
                 "macs": cost.macs, "params": cost.params}
        over = self.budget.violations(macs=cost.macs, params=cost.params)
        decision = self.predicted[arch.arch_hash] = self.latency.decide(arch)
        if decision.reject:  # the latency budget, checked on the prediction's interval
            over.append(decision.reject)
        if not over:
            return attrs, decision
        _optuna.set_user_attrs(trial, {**attrs, "status": "rejected",
                                       "reject_reason": "over budget: " + "; ".join(over)})
        set_constraints(trial, self.budget, cost.macs, cost.params,
                        decision.prediction.latency_ms if decision.prediction else None)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        study.tell(trial, placeholder_values(self.cfg.objectives, cost.macs, cost.params, complete,
                                             self.cfg.eval.proxy))
        return attrs, None

    def _tell_metrics(self, trial: optuna.trial.Trial, metrics: dict[str, Any], *, status: str) -> bool:
        """Tell one evaluated (or cached) trial; False when another driver had failed it already
        (its parameters are queued again, and this result is in the cache for them)."""
        ua = trial.user_attrs  # one storage read
        macs, params = ua["macs"], ua["params"]
        decision = self.predicted.get(ua["arch_hash"])
        metrics = self.latency.settle(metrics, decision.prediction if decision else None, ua["arch"])
        try:
            values = objective_values(metrics, self.cfg.objectives)
            attrs = {k: metrics[k] for k in TRIAL_ATTRS if metrics.get(k) is not None}
            attrs["status"] = status
            if values is None:
                attrs["fail_reason"] = "the evaluation gave no finite value for every objective"
            _optuna.set_user_attrs(trial, attrs)
            if values is None:
                self.study.tell(trial, state=TrialState.FAIL)
                self.counts["failed"] += 1
                return True
            set_constraints(trial, self.budget, macs, params, metrics.get("latency_ms"))
            self.study.tell(trial, values)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            if not trial_finished(self.storage, trial):
                raise
            return False
        fault_point("after_tell", trial.number)
        self.snapshot(trial.number)
        save_trial_note(self.study, trial, trial_note(trial.number, {**trial.user_attrs, **attrs},
                                                          self.cfg.eval.train.val_images))
        return True

    def _finish(self, key: str, metrics: dict[str, Any] | None, error: str | None) -> None:
        if self.rungs.owns(key):
            self.rungs.finish(key, metrics, error)
            self.snapshot(-1)
            return
        if error is not None:
            self._fail_job(key, error, requeue=False)
            return
        payload = metrics.pop("weights", None) if metrics is not None else None
        if metrics is not None:
            # Cached before told: if this driver dies in between, the next one fails the RUNNING
            # trial, queues its parameters again, and the re-asked trial takes this result from
            # the cache instead of evaluating the architecture a second time. Cached before its
            # weights are written, too: a full weights folder loses the weights, not the evaluation.
            self.tables.put_cached(self.settings_key, key, self.space.name, metrics)
        if payload is not None:  # tensors: kept beside the database, never in the JSON cache
            save_weights(self.cfg.storage, self.study_name, key, payload, settings_key=self.settings_key)
        fault_point("before_tell", key)
        self.job_arch.pop(key, None)
        trials = self.jobs.pop(key, [])
        for i, trial in enumerate(trials):
            self.heartbeat.remove(_optuna.trial_id(trial))
            if self._tell_metrics(trial, metrics, status="evaluated" if i == 0 else "cached") and i:
                self.counts["cached"] += 1

    def _fail_job(self, key: str, reason: str, *, requeue: bool) -> None:
        self.job_arch.pop(key, None)
        trials = self.jobs.get(key, [])
        while trials:
            trial = trials[0]
            self.heartbeat.remove(_optuna.trial_id(trial))
            try:
                trial.set_user_attr("fail_reason", reason)
                self.study.tell(trial, state=TrialState.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                if not trial_finished(self.storage, trial):
                    raise
                trials.pop(0)  # failed and queued again by another driver already
                continue
            trials.pop(0)
            self.counts["failed"] += 1
            if requeue and trial.params:
                self.study.enqueue_trial(trial.params, skip_if_exists=False, user_attrs=carried_attrs(trial.user_attrs))
        self.jobs.pop(key, None)

    def _abandon(self, runner: Any, reason: str) -> None:
        """Fail (and queue again) the trials still waiting for an evaluation when the driver stops
        early, so that none stays RUNNING; what cannot be written now, the next driver's
        recover() does."""
        if runner is not None:
            with contextlib.suppress(Exception):
                runner.cancel_all()
        with contextlib.suppress(Exception):
            self.rungs.abandon()
        for key in list(self.jobs):
            try:
                self._fail_job(key, reason, requeue=True)
            except Exception:
                self.jobs.pop(key, None)
