"""The search driver: Optuna ask/tell over a search space, evaluations on a runner (Ray).

Budget first: every candidate's exact cost is computed before anything is built, and one over
budget is never trained nor profiled; it is told to Optuna as infeasible through
``trial.set_constraint`` so that the sampler learns the feasible region. Only the driver writes
to the study storage; workers return plain results. The loop reports each event to its
callbacks (the progress bar is one).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import TrialState

from nasconv.arch import ArchSpec
from nasconv.budget import format_count, parse_budget
from nasconv.errors import BudgetError, NasconvError, Terminated
from nasconv.evaluate import EvaluationJob, evaluate, evaluate_keeping_weights
from nasconv.faults import fault_point
from nasconv.results import (
    EVALUATED,
    feasible_front,
    fill_intervals,
    hypervolume,
    losses,
    resolution,
    rung_counts,
    trial_summary,
)
from nasconv.search.config import SearchConfig, SearchResult
from nasconv.search.deadline import Deadline
from nasconv.search.latency_gate import LatencyGate
from nasconv.search.liveness import (
    DeferredInterrupt,
    Heartbeat,
    fail_and_requeue,
    mark_gone,
    mark_live,
    new_driver_id,
    recover,
)
from nasconv.search.objectives import reference_point
from nasconv.search.paired import PAIRED_ATTR, time_front
from nasconv.search.params import op_params_by_family, ordinal_params
from nasconv.search.progress import ProgressBar, SearchCallback, SearchStatus
from nasconv.search.samplers import quiet_optuna
from nasconv.search.scheduler import RungScheduler, is_rung_key
from nasconv.search.screen import Screening, check_latency_source
from nasconv.search.setup import check_before_storage
from nasconv.search.study import default_study_name, open_study, sampler_name
from nasconv.search.task import keep_stored_head, proxy_too_short, stamp_task, stored_attrs
from nasconv.search.trials import TrialFlow
from nasconv.spaces import load_space
from nasconv.storage import HEARTBEAT_INTERVAL_S, FrontSnapshot, is_database_locked, locked_error, open_storage

#: how long a driver with nothing to run waits before it looks at the study again (seconds)
IDLE_WAIT_S = 0.5


class SearchDriver(TrialFlow):
    """The loop: ask while there is room, promote what is due, wait, finish; one trial's way
    through it is :class:`~nasconv.search.trials.TrialFlow`."""

    def __init__(self, cfg: SearchConfig, *, evaluator: Callable[..., dict[str, Any]] = evaluate,
                 runner: Any = None, callbacks: Sequence[SearchCallback] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        quiet_optuna()
        self.cfg = cfg
        # --time counts from here (the command's start); ``clock`` is injectable for tests
        self.deadline = Deadline(cfg.time_s, cfg.time_grace_s, clock=clock)
        self.evaluator = evaluator
        self._runner = runner
        self.space = load_space(cfg.space)
        self.budget = parse_budget(cfg.budget)
        # What the evaluations need, checked before the storage is written (nasconv.search.setup)
        unbound = self.space
        pre = check_before_storage(cfg, self.space, self.budget, default_evaluator=evaluator is evaluate,
                                   runner=runner)
        cfg = self.cfg = pre.cfg
        self.space, self.task, self.notes = pre.space, pre.task, pre.notes
        self.study_name = cfg.study_name or default_study_name(self.space, self.budget)
        self.directions = cfg.directions
        self.callbacks = list(callbacks) if callbacks is not None else ([ProgressBar()] if cfg.progress else [])
        self.storage, self.tables = open_storage(cfg.storage)
        try:
            if self.task is not None:
                self.space, note = keep_stored_head(stored_attrs(self.storage, self.study_name), unbound, self.space)
                self.notes += [note] if note else []
            self.latency = LatencyGate.for_search(cfg, self.space, self.budget, self.tables)
            if cfg.screen:
                note = check_latency_source(cfg, self.budget, self.latency)
                self.notes += [note] if note else []
            self.study = open_study(self.storage, self.study_name, cfg, self.space, self.budget)
            if self.task is not None:
                self.notes = self.task.summary.warnings() + self.notes
                stamp_task(self.study, self.task)
                if cfg.progress:
                    print(self.task.summary.line(), flush=True)
            if cfg.progress:
                for note in self.notes:
                    print(note, file=sys.stderr, flush=True)
            self.hv_ref: list[float] | None = self.study.user_attrs.get("hv_reference")
            self.ordinal = ordinal_params(self.study)
            self.sampler = sampler_name(cfg, self.study.user_attrs)
            self.by_family = op_params_by_family(self.study, self.sampler)
        except Exception as exc:
            self.tables.dispose()
            if is_database_locked(exc):
                raise locked_error(cfg.storage) from None
            raise
        # The job a worker runs: plain data in and out; made once, so that Ray ships it once.
        self.job = EvaluationJob(evaluate_keeping_weights if cfg.keep_weights and evaluator is evaluate
                                 else evaluator)
        self.heartbeat = Heartbeat(self.storage)
        self.interrupts = DeferredInterrupt()
        self.driver_id = new_driver_id()
        self.fid = cfg.fidelity.adopt(self.study.user_attrs.get("fidelity"))
        # rung 0's settings (a flat search's: cfg.eval itself); every new candidate is evaluated with them
        self.eval0 = self.fid.rung_config(cfg.eval, 0)
        self.settings_key = self.eval0.settings_key()
        self.rungs = RungScheduler(self.tables, self.study_name, self.space.name, self.fid, cfg.eval,
                                   cfg.objectives, cfg.directions, self.driver_id, storage=self.storage,
                                   remeasure=cfg.latency == "predict+remeasure" and self.latency.model is not None)
        self.front_rung = 0
        self.predicted: dict[str, Any] = {}  # arch hash -> its latency prediction (nasconv.latency)
        self._seeded = False
        self.jobs: dict[str, list[optuna.trial.Trial]] = {}  # arch hash -> trials waiting for it
        self.job_arch: dict[str, ArchSpec] = {}
        self.counts = {"failed": 0, "rejected": 0, "cached": 0}
        self.last_front: list[optuna.trial.FrozenTrial] = []
        self.last_hv = 0.0
        self.last_evaluated: int | None = None  # set by snapshot(), taken by _take_evaluated()
        self.screen = Screening(self) if cfg.screen else None  # before the loop (nasconv.search.screen)

    # --- setup ----------------------------------------------------------------------------
    def _make_runner(self) -> Any:
        if self._runner is not None:
            return self._runner
        from nasconv.runners import InlineRunner, RayRunner  # Ray loads only for a Ray search

        cpus = self.cfg.cpus_per_worker or max(1, (os.cpu_count() or 1) // self.cfg.workers)
        if self.cfg.runner == "inline":
            return InlineRunner(threads=cpus)
        return RayRunner(address=self.cfg.address, workers=self.cfg.workers, cpus_per_worker=cpus,
                         gpus_per_trial=self.cfg.gpus_per_trial)

    def recover(self) -> int:
        """Fail the RUNNING trials of drivers that died and queue their parameters again."""
        return recover(self.study, self.storage)

    def _fail_and_requeue(self, t: optuna.trial.FrozenTrial, reason: str) -> bool:
        """Fail one RUNNING trial with its reason and queue its parameters again (once)."""
        return fail_and_requeue(self.study, self.storage, t, reason)

    # --- counting -------------------------------------------------------------------------
    def _complete_trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    @staticmethod
    def _evaluated_in(complete: list[optuna.trial.FrozenTrial]) -> int:
        return sum(1 for t in complete if t.user_attrs.get("status") in EVALUATED)

    def evaluated_count(self) -> int:
        return self._evaluated_in(self._complete_trials())

    def _take_evaluated(self) -> int:
        """The evaluated count as the snapshot taken since the last call read it (saves reading
        the study again on the hot path), else read afresh."""
        n, self.last_evaluated = self.last_evaluated, None
        return self.evaluated_count() if n is None else n

    # --- front ----------------------------------------------------------------------------
    def front_and_hv(self, complete: list[optuna.trial.FrozenTrial] | None = None
                     ) -> tuple[list[optuna.trial.FrozenTrial], float]:
        """The feasible Pareto front of the evaluated trials (what ``Study.best_trials`` gives,
        from one read of the study's complete trials, passed in when the caller has them) and
        its hypervolume."""
        complete = self._complete_trials() if complete is None else complete
        if self.fid.tracked:
            front, self.front_rung = self.rungs.front(complete, self.study.directions)
        else:
            front = feasible_front(complete, self.study.directions)
        if not front:
            return [], 0.0
        if self.hv_ref is None:
            self.hv_ref = self.study.user_attrs.get("hv_reference")
        front_losses = losses(front, self.directions)
        if self.hv_ref is None:
            # The first driver to get here decides; concurrent ones adopt its point.
            ref = reference_point(self.cfg.objectives, front_losses, proxy=self.cfg.eval.proxy, budget=self.budget,
                                  bounds=self.space.cost_bounds(), baseline=self.study.user_attrs.get("baseline") or {})
            self.hv_ref = self.tables.setdefault(self.study_name, "hv_reference", ref)
            self.study.set_user_attr("hv_reference", self.hv_ref)
        return front, hypervolume(front_losses, self.hv_ref)

    def snapshot(self, trial_number: int) -> None:
        complete = self._complete_trials()
        front, hv = self.front_and_hv(complete)
        self.last_front, self.last_hv = front, hv
        n = self.last_evaluated = self._evaluated_in(complete)
        fault_point("during_snapshot", trial_number)
        self.tables.add_snapshot(self.study_name, FrontSnapshot(trial_number, n, [t.number for t in front], hv,
                                                                self.front_rung if self.fid.tracked else None))

    def _catch_up_snapshot(self, evaluated: int) -> None:
        """A driver that died between a tell and its snapshot left the last snapshot behind."""
        last = self.tables.last_snapshot(self.study_name)
        if last is None or last.n_complete != evaluated:
            self.snapshot(max(t.number for t in self._complete_trials()))

    # --- main loop ------------------------------------------------------------------------
    def _report(self, event: str, evaluated: int, running: int) -> None:
        status = SearchStatus(evaluated=evaluated, total=self.cfg.trials, running=running,
                              front=len(self.last_front), hypervolume=self.last_hv, promoted=self.rungs.promoted,
                              rung=self.front_rung if self.fid.tracked else None, **self.counts)
        for cb in self.callbacks:
            cb(event, status)

    def run(self) -> SearchResult:
        runner = None
        interrupted = False
        on_time = False  # stopped by the --time deadline
        requeued = 0
        baseline = None
        max_fail = self.cfg.max_failures if self.cfg.max_failures is not None else max(10, self.cfg.trials)
        max_rej = self.cfg.max_rejections if self.cfg.max_rejections is not None else max(200, 50 * self.cfg.trials)
        rejected_in_a_row = 0
        critical = self.interrupts.critical
        mark_live(self.driver_id)
        try:
            self.recover()
            runner = self._make_runner()
            self.interrupts.install()  # after Ray's init, which may set its own handlers
            self.heartbeat.start()
            baseline = self._baseline(runner)
            short = proxy_too_short(baseline, self.task.summary if self.task else None, self.cfg.eval)
            if short:
                self.notes.append(short)
                if self.cfg.progress:
                    print(short, file=sys.stderr, flush=True)
            if self.screen is not None:  # candidates queued for the loop; the deadline may end it
                self.screen.run(runner)
            evaluated = self.evaluated_count()
            self.counts["rejected"] = sum(1 for t in self._complete_trials()
                                          if t.user_attrs.get("status") == "rejected")
            self.counts["failed"] = len(self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
            if evaluated:
                self.last_front, self.last_hv = self.front_and_hv()
                with critical():
                    self._catch_up_snapshot(evaluated)
            self._report("start", evaluated, runner.in_flight)
            last_recovery = time.monotonic()
            while True:
                if time.monotonic() - last_recovery > HEARTBEAT_INTERVAL_S:
                    # Also while running: a driver beside this one that dies leaves its trials
                    # to this one (its parameters come back here as queued trials).
                    last_recovery = time.monotonic()
                    with critical():
                        self.recover()
                # Ask while there is room: never more in flight than workers, nor more trials in
                # flight, this driver's and the others', than the study has left to evaluate.
                idle = False
                while runner.in_flight < runner.capacity and not self.deadline.passed():
                    with critical():
                        if self._promote_one(runner, evaluated):
                            continue
                        trial, evaluated = self._claim()
                        if trial is None:
                            idle = runner.in_flight == 0  # every slot left is another driver's
                            break
                        outcome = self._ask_one(runner, trial)
                    if outcome == "rejected":
                        rejected_in_a_row += 1
                        if rejected_in_a_row > max_rej:
                            raise BudgetError(
                                f"the sampler proposed {rejected_in_a_row} over-budget candidates in a row; the "
                                f"budget {self.budget.text} leaves too little of {self.space.name} (cheapest: "
                                f"{format_count(self.space.cost_bounds()['min_macs'])}MACs)")
                        continue
                    rejected_in_a_row = 0
                    if outcome == "cached":
                        evaluated = self._take_evaluated()
                        self._report("cached", evaluated, runner.in_flight)
                if runner.in_flight == 0 and self.deadline.passed():
                    on_time = True
                    break
                if runner.in_flight == 0 and evaluated >= self.cfg.trials:
                    with critical():
                        if not self._promote_one(runner, evaluated):
                            break
                with self.deadline.watching():
                    done = runner.wait(timeout=0.5)  # an inline evaluation runs here: interruptible
                if idle and not done:
                    time.sleep(IDLE_WAIT_S)  # for the other drivers' results (or a slot they give back)
                with critical():
                    for key, metrics, error in done:
                        self._finish(key, metrics, error)
                if done:
                    evaluated = self._take_evaluated()
                for key, metrics, error in done:
                    self._report("error" if error else "promoted" if is_rung_key(key) else "done",
                                 evaluated, runner.in_flight)
                    if self.counts["failed"] > max_fail:
                        raise NasconvError(f"{self.counts['failed']} evaluations failed (more than {max_fail}); "
                                           f"last: {error}")
                self.deadline.check(runner.in_flight)  # the grace is over: OutOfTime
        except BaseException as caught:
            exc = self.interrupts.identify(caught)
            on_time = self.deadline.overran(exc)
            interrupted = isinstance(exc, KeyboardInterrupt) and not on_time
            abandoned = self._pending()
            promotions = len(self.rungs.running)
            self._abandon(runner, self.deadline.reason if on_time else
                          f"interrupted ({exc.signame})" if isinstance(exc, Terminated) else
                          "interrupted (Ctrl-C)" if interrupted else
                          f"the driver stopped: {type(exc).__name__}: {str(exc).strip()[:200]}")
            if isinstance(exc, Terminated):
                exc.note = (f"{abandoned} in-flight trial(s) failed and queued again; " if abandoned else "") + \
                    "run the same command to continue"
            if on_time:  # stopped as Ctrl-C stops, then ends as a finished run
                requeued = abandoned + promotions
            else:
                if not interrupted and is_database_locked(exc):
                    raise locked_error(self.cfg.storage) from None
                if exc is not caught:
                    raise exc from None
                raise
        finally:
            self.deadline.close()
            mark_gone(self.driver_id)
            self.interrupts.uninstall()
            self.heartbeat.stop.set()
            for cb in self.callbacks:
                cb.close()
            if runner is not None and self._runner is None:
                runner.shutdown()
            if interrupted or requeued:
                with contextlib.suppress(Exception):
                    self.snapshot(-1)
            self.tables.dispose()
        res = self.result(baseline, interrupted)
        res.stopped_on_time, res.time_s, res.requeued = on_time, self.cfg.time_s, requeued
        res.screen = self.screen.summary() if self.screen is not None else None
        return res

    def _baseline(self, runner: Any) -> dict[str, Any] | None:
        """The space's all-standard network, evaluated once for reference (it may be over budget)."""
        if not self.cfg.evaluate_baseline:
            return None
        if "baseline" in self.study.user_attrs:
            return self.study.user_attrs["baseline"]
        arch = self.space.baseline()
        # compared with the front, so evaluated where the front stands: at the top rung
        base_cfg = self.fid.baseline_config(self.cfg.eval)
        key = base_cfg.settings_key()
        metrics = self.tables.get_cached(key, arch.arch_hash)
        if metrics is None:
            runner.submit("__baseline__", self.job, arch.to_dict(), base_cfg.to_dict())
            done: list = []
            while not done:
                done = runner.wait(timeout=1.0)
            _, metrics, error = done[0]
            if error:
                raise NasconvError(f"the baseline evaluation failed: {error}")
            metrics.pop("weights", None)
            self.tables.put_cached(key, arch.arch_hash, self.space.name, metrics)
        metrics = self.latency.settle(metrics, self.latency.decide(arch).prediction, arch.to_dict())
        keep = {k: metrics.get(k) for k in ("accuracy", "accuracy_se", "accuracy_ci", "val_images", "score",
                                            "latency_ms", "latency_ci_ms", "params", "macs", "arch_hash")}
        self.study.set_user_attr("baseline", keep)
        return keep

    def _promote_one(self, runner: Any, evaluated: int) -> bool:
        """Start the next promotion (or, once every candidate is in, repeat); False when none is due."""
        if not self.fid.tracked:
            return False
        complete = self._complete_trials()
        job = self.rungs.next_job(complete, self.study.directions,
                                  repeats_now=evaluated >= self.cfg.trials and not self._pending()
                                  and not self.rungs.running)
        if job is None:
            return False
        arch = ArchSpec.from_dict(next(t for t in complete if t.number == job.trial_number).user_attrs["arch"])
        if self.rungs.start(job, arch, runner, self.job):  # served from the evaluation cache
            self.snapshot(job.trial_number)
            self._report("promoted", self._take_evaluated(), runner.in_flight)
        return True

    def result(self, baseline: dict[str, Any] | None, interrupted: bool) -> SearchResult:
        n_val = self.cfg.eval.train.val_images
        front = [trial_summary(t, n_val) for t in sorted(self.last_front, key=lambda t: t.number)]
        remeasured = self.latency.remeasure_front(front, self.tables, self.study_name) \
            if self.cfg.latency == "predict+remeasure" and not interrupted else (0, 0)
        per_rung = rung_counts(self.rungs.views(self._complete_trials())) if self.fid.tracked else {}
        baseline = fill_intervals(dict(baseline), n_val) if baseline else None
        # latency differences are judged on the front and the baseline timed together, now
        paired = (None if interrupted else time_front(self.study, self.cfg, self.space, self.last_front, front,
                                                      baseline)) or self.study.user_attrs.get(PAIRED_ATTR)
        return SearchResult(
            data=self.task.summary.to_dict() if self.task else None, notes=list(self.notes),
            study_name=self.study_name, storage=self.cfg.storage, evaluated=self.evaluated_count(),
            failed=self.counts["failed"], rejected=self.counts["rejected"], cached=self.counts["cached"],
            front=front, hypervolume=self.last_hv, baseline=baseline, interrupted=interrupted,
            noise=resolution(front, baseline, self.cfg.objectives, paired), rung=self.front_rung, rungs=self.fid.rungs,
            promoted=self.rungs.promoted, per_rung=per_rung, remeasured=remeasured[0],
            remeasured_over_budget=remeasured[1])


def run_search(cfg: SearchConfig, *, evaluator: Callable[..., dict[str, Any]] = evaluate,
               runner: Any = None, callbacks: Sequence[SearchCallback] | None = None,
               clock: Callable[[], float] | None = None) -> SearchResult:
    """Run (or continue) the study until it holds ``cfg.trials`` evaluated candidates, or until
    ``cfg.time_s`` has passed (``clock``: the deadline's, :mod:`nasconv.search.deadline`)."""
    return SearchDriver(cfg, evaluator=evaluator, runner=runner, callbacks=callbacks, clock=clock).run()
