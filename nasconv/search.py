"""The search driver: Optuna ask/tell over a search space, evaluations on a runner (Ray).

Budget first: every candidate's exact cost is computed before anything is built, and one over
budget is never trained nor profiled; it is told to Optuna as infeasible through
``trial.set_constraint`` so that the sampler learns the feasible region. Only the driver writes
to the study storage; workers return plain results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import signal
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import optuna
from optuna.study._constrained_optimization import _is_constrained_optimization
from optuna.study._multi_objective import _get_pareto_front_trials_by_trials
from optuna.trial import TrialState

from nasconv import __version__
from nasconv.arch import ArchSpec
from nasconv.budget import Budget, check_feasible, format_count, parse_budget
from nasconv.cost import estimate_cost
from nasconv.errors import BudgetError, NasconvError, StorageError, UnknownNameError, UsageError
from nasconv.evaluate import EvalConfig, evaluate
from nasconv.results import feasible_front, first_per_architecture, hypervolume, losses, trial_summary
from nasconv.faults import fault_point
from nasconv.spaces import SearchSpace, load_space
from nasconv.storage import (DEFAULT_STORAGE, GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, FrontSnapshot, NasconvTables,
                             is_database_locked, locked_error, open_storage)
from nasconv._optuna import set_user_attrs

SAMPLERS = ("nsga2", "tpe", "gp", "random")
#: objective name -> (metric key, direction)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("score", "maximize"),
    "latency": ("latency_ms", "minimize"),
    "macs": ("macs", "minimize"),
    "params": ("params", "minimize"),
}
#: what each evaluated trial carries as user attributes (besides arch, status, ...)
TRIAL_ATTRS = ("accuracy", "score", "proxy", "latency_ms", "latency_iqr_ms", "latency_rel_iqr", "latency_capped",
               "latency_batch", "latency_resolution", "device", "device_name", "threads", "train_time_s",
               "eval_time_s", "diverged", "diverged_step", "steps", "torch_version", "nasconv_version", "node",
               "node_ip", "ray_node_id", "worker_pid", "settings_key")


@dataclass
class SearchConfig:
    space: str
    budget: str | None = None
    trials: int = 20
    sampler: str = "nsga2"
    objectives: tuple[str, ...] = ("accuracy", "latency")
    seed: int = 0
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    workers: int = 1
    cpus_per_worker: int | None = None
    address: str | None = None
    gpus_per_trial: float = 0.0
    eval: EvalConfig = field(default_factory=EvalConfig)
    evaluate_baseline: bool = True
    runner: str = "ray"  # "ray" or "inline"
    max_failures: int | None = None
    max_rejections: int | None = None
    progress: bool = True
    #: keep the trained weights of every evaluated candidate (needs a proxy that trains the
    #: architecture itself: --full-proxy), for `nasconv export --weights`
    keep_weights: bool = False


@dataclass
class SearchResult:
    study_name: str
    storage: str
    evaluated: int
    failed: int
    rejected: int
    cached: int
    front: list[dict[str, Any]]
    hypervolume: float
    baseline: dict[str, Any] | None
    interrupted: bool = False


def _quiet_optuna() -> None:
    # nasconv prints its own progress; Optuna's per-trial INFO lines and its notes that
    # heartbeats and fail_stale_trials are "experimental" would drown it.
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def make_sampler(name: str, seed: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    if name == "tpe":
        # group=True: the family's hyperparameter is a conditional parameter (suggest_arch's
        # by_family), which multivariate TPE handles only with the group decomposition.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True, group=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UnknownNameError("sampler", name, SAMPLERS)


def default_study_name(space: SearchSpace, budget: Budget) -> str:
    return f"{space.name}-{budget.text or 'nobudget'}"


# --- parameters <-> architectures -----------------------------------------------------------


#: samplers that see a stage's operator as family + conditional hyperparameter (see suggest_arch)
BY_FAMILY_SAMPLERS = ("tpe",)


def suggest_arch(trial: optuna.trial.Trial, space: SearchSpace, *, ordinal: bool = True,
                 by_family: bool = False) -> ArchSpec:
    """The operator per stage, and depth/width where the stage searches them.

    The operator is one categorical over the stage's choices (``s<i>_op``: every choice, e.g.
    ``gc(groups=4)``, a level of its own), or with ``by_family`` the family (``s<i>_family``:
    ``gc``) and, where the family has several choices, which one (``s<i>_gc``: a conditional
    parameter). The flat form keeps random sampling uniform over architectures (``random``
    search as the NAS literature runs it) and gives NSGA-II's crossover whole choices to
    exchange (with the family form, Optuna's NSGA-II draws a conditional parameter at random
    instead of inheriting it). TPE gets the family form: its Parzen estimator carries what it
    learned about a family at one hyperparameter over to the others (with 30 levels per stage
    and a handful of good trials, the flat form's estimate is mostly its uniform prior), and its
    start-up trials are uniform over families, so that a family is not tried more often for
    having a longer hyperparameter grid (gc's five group counts against one ``standard``). GP,
    whose kernel needs every parameter in every trial, keeps the flat form. Measured in
    ``benchmarks/search_quality.py`` (the issue's setting) and, with more seeds, on a surrogate
    in ``benchmarks/sampler_surrogate.py``. A study keeps the form it began with
    (:func:`op_params_by_family`).

    With ``ordinal``, a depth or width whose choices are evenly spaced integers is an integer
    parameter (``suggest_int`` with that step), so that TPE, GP and NSGA-II's crossover see that
    3 lies between 2 and 4; otherwise (and in a study begun with categorical depths/widths, see
    :func:`ordinal_params`) a categorical.
    """
    choices = []
    for i, st in enumerate(space.stages):
        by_label = {op.label(): op for op in st.ops}
        if by_family:
            families: dict[str, list[str]] = {}
            for label, op in by_label.items():
                families.setdefault(op.name, []).append(label)
            members = families[trial.suggest_categorical(f"s{i}_family", list(families))]
            label = members[0] if len(members) == 1 else trial.suggest_categorical(
                f"s{i}_{by_label[members[0]].name}", members)
        else:
            label = trial.suggest_categorical(f"s{i}_op", list(by_label))
        depth = _suggest_level(trial, f"s{i}_depth", st.depths, ordinal)
        width = _suggest_level(trial, f"s{i}_width", st.widths, ordinal)
        choices.append((by_label[label], depth, width))
    return space.make_arch(choices)


def _suggest_level(trial: optuna.trial.Trial, name: str, values: tuple[int, ...], ordinal: bool) -> int:
    if len(values) == 1:
        return values[0]
    vs = sorted(values)
    step = vs[1] - vs[0]
    if ordinal and step > 0 and all(b - a == step for a, b in zip(vs, vs[1:])):
        return trial.suggest_int(name, vs[0], vs[-1], step=step)
    return trial.suggest_categorical(name, list(values))


def ordinal_params(study: optuna.Study) -> bool:
    """Whether this study's depth/width parameters are integers: yes for a new study; a study
    whose trials hold them as categoricals (as earlier nasconv versions made them) keeps them so,
    as Optuna fixes a parameter's distribution within a study."""
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            if name.endswith(("_depth", "_width")):
                return not isinstance(dist, optuna.distributions.CategoricalDistribution)
    return True


def op_params_by_family(study: optuna.Study, sampler: str) -> bool:
    """Whether this study's operators are family + hyperparameter parameters (suggest_arch's
    ``by_family``): as its trials hold them, whichever sampler continues it (Optuna fixes a
    parameter's distribution within a study); for a new study, as its sampler prefers."""
    for t in study.get_trials(deepcopy=False):
        if "s0_family" in t.distributions:
            return True
        if "s0_op" in t.distributions:
            return False
    return sampler in BY_FAMILY_SAMPLERS


# --- the driver -------------------------------------------------------------------------------


#: tokens of the drivers running in this process (a notebook may run several in turn)
_LIVE_DRIVERS: set[str] = set()


def _new_driver_id() -> str:
    """``host:pid:token``; the token tells a live driver of this process from one that ended."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def _driver_dead(driver: str) -> bool:
    """Whether a driver of this host is known to be gone (never True for another host's)."""
    host, _, rest = driver.partition(":")
    pid, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return token not in _LIVE_DRIVERS
    return not _pid_alive(int(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Heartbeat(threading.Thread):
    """Records Optuna heartbeats for this driver's running trials, so that a driver that dies
    leaves trials another driver can fail after the grace period."""

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        super().__init__(daemon=True, name="nasconv-heartbeat")
        self.storage = storage
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def add(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.add(trial_id)
        try:
            self.storage.record_heartbeat(trial_id)
        except Exception:
            pass

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_INTERVAL_S / 2):
            with self.lock:
                ids = list(self.trial_ids)
            for tid in ids:
                try:
                    self.storage.record_heartbeat(tid)
                except Exception:
                    pass


class _DeferredInterrupt:
    """Ctrl-C between storage writes, never in the middle of a group of them.

    Inside ``critical()`` a first SIGINT is held until the block ends (a second one interrupts at
    once), so that a trial is never left half-told; elsewhere, e.g. during an evaluation running
    in this process, SIGINT raises KeyboardInterrupt at once as usual.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGINT)
        if current is signal.SIG_IGN:  # e.g. a background job: leave it ignored
            return
        self.previous = signal.signal(signal.SIGINT, self._handler)

    def uninstall(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.depth and not self.pending:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self):  # type: ignore[no-untyped-def]
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending:
            self.pending = False
            raise KeyboardInterrupt


def _finished(storage: optuna.storages.BaseStorage, trial: optuna.trial.Trial) -> bool:
    """Whether a trial this driver holds was finished by someone else (another driver that
    took this one for dead failed it and queued its parameters again)."""
    try:
        return storage.get_trial(trial._trial_id).state.is_finished()
    except Exception:
        return False


class Progress:
    """A live status line on a terminal; one line per finished trial elsewhere."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.total = total
        self.t0 = time.monotonic()
        self.done_at_start: int | None = None
        self.last = ""

    def update(self, *, evaluated: int, failed: int, rejected: int, cached: int, front: int, hv: float,
               running: int, event: str = "") -> None:
        if not self.enabled:
            return
        if self.done_at_start is None:
            self.done_at_start = evaluated
        elapsed = time.monotonic() - self.t0
        new = evaluated - self.done_at_start
        eta = ""
        if new > 0 and evaluated < self.total:
            eta = f" eta {_hms(elapsed / new * (self.total - evaluated))}"
        bar = "#" * int(20 * min(evaluated, self.total) / max(1, self.total))
        line = (f"[{bar:<20}] {evaluated}/{self.total} evaluated, {failed} failed, {rejected} rejected"
                f" (over budget), {cached} cached, {running} running | front {front}, HV {hv:.4g}"
                f" | {_hms(elapsed)}{eta}")
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
            sys.stderr.flush()
        elif event:
            sys.stderr.write(f"{event}  {line}\n")
            sys.stderr.flush()
        self.last = line

    def close(self) -> None:
        if self.tty and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def settings_changes(stored: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``name: stored in the study, now`` for each keyed evaluation setting (nested ones dotted)
    that differs between two :meth:`EvalConfig.keyed_settings` dicts."""
    out = []
    for key in sorted(set(stored) | set(now)):
        a, b = stored.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_changes(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {a!r} in the study, {b!r} now")
    return out


class SearchDriver:
    def __init__(self, cfg: SearchConfig, *, evaluator: Callable[..., dict[str, Any]] = evaluate,
                 runner: Any = None) -> None:
        _quiet_optuna()
        self.cfg = cfg
        self.evaluator = evaluator
        self._runner = runner
        self.space = load_space(cfg.space)
        self.budget = parse_budget(cfg.budget)
        self._check_config()
        check_feasible(self.budget, self.space.cost_bounds(), self.space.name)
        self.study_name = cfg.study_name or default_study_name(self.space, self.budget)
        self.directions = [OBJECTIVES[o][1] for o in cfg.objectives]
        self.settings_key = cfg.eval.settings_key()
        self.storage, self.tables = open_storage(cfg.storage)
        try:
            self.study = self._open_study()
            self.hv_ref: list[float] | None = self.study.user_attrs.get("hv_reference")
            self.ordinal = ordinal_params(self.study)
            self.by_family = op_params_by_family(self.study, cfg.sampler)
        except Exception as exc:
            self.tables.dispose()
            if is_database_locked(exc):
                raise locked_error(cfg.storage) from None
            raise
        self.heartbeat = _Heartbeat(self.storage)
        self.interrupts = _DeferredInterrupt()
        self.driver_id = _new_driver_id()
        self._seeded = False
        self.jobs: dict[str, list[optuna.trial.Trial]] = {}  # arch hash -> trials waiting for it
        self.job_arch: dict[str, ArchSpec] = {}
        self.counts = {"failed": 0, "rejected": 0, "cached": 0}
        self.last_front: list[optuna.trial.FrozenTrial] = []
        self.last_hv = 0.0
        self.last_evaluated: int | None = None  # set by snapshot(), taken by _take_evaluated()

    # --- setup ----------------------------------------------------------------------------
    def _check_config(self) -> None:
        c = self.cfg
        if c.trials < 1:
            raise UsageError(f"--trials must be >= 1, got {c.trials}")
        if c.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {c.workers}")
        if c.gpus_per_trial < 0:
            raise UsageError(f"--gpus-per-trial must be >= 0, got {c.gpus_per_trial}")
        if c.sampler not in SAMPLERS:
            raise UnknownNameError("sampler", c.sampler, SAMPLERS)
        if not c.objectives:
            raise UsageError("at least one objective is needed")
        for o in c.objectives:
            if o not in OBJECTIVES:
                raise UnknownNameError("objective", o, list(OBJECTIVES))
        if len(set(c.objectives)) != len(c.objectives):
            raise UsageError(f"objectives must be distinct, got {','.join(c.objectives)}")
        if ("latency" in c.objectives or self.budget.latency_ms) and not c.eval.latency:
            raise UsageError("a latency objective or budget needs latency measurement (drop --no-latency)")
        if c.runner not in ("ray", "inline"):
            raise UsageError(f"runner must be ray or inline, got {c.runner!r}")
        c.eval.check()
        if c.keep_weights:
            from nasconv.export import keep_weights_problem

            problem = keep_weights_problem(self.space, c.eval)
            if problem:
                raise UsageError(problem)

    def _open_study(self) -> optuna.Study:
        identity = {"space": self.space.name, "budget": self.budget.text, "objectives": list(self.cfg.objectives),
                    "settings_key": self.settings_key}
        try:
            existing = optuna.study.get_all_study_names(self.storage)
        except Exception as exc:
            if is_database_locked(exc):
                raise
            raise StorageError(f"cannot read studies from {self.cfg.storage}: {exc}") from None
        if self.study_name not in existing:
            try:
                optuna.create_study(study_name=self.study_name, storage=self.storage, directions=self.directions)
            except optuna.exceptions.DuplicatedStudyError:
                pass  # another driver created it a moment ago: join it (its identity is checked below)
            except Exception as exc:
                if is_database_locked(exc):
                    raise
                raise StorageError(f"cannot create study {self.study_name!r}: {exc}") from None
        study = optuna.load_study(study_name=self.study_name, storage=self.storage,
                                  sampler=optuna.samplers.RandomSampler())
        attrs = study.user_attrs
        n_trials = len(study.get_trials(deepcopy=False))
        if "space" not in attrs and n_trials == 0:
            # New, or its creator died before stamping it: "space" is written last, so a study
            # without it was never used.
            extra = {"eval_config": self.cfg.eval.to_dict(), "sampler": self.cfg.sampler, "seed": self.cfg.seed,
                     "nasconv_version": __version__, "budget_limits": self.budget.to_dict()}
            stamp = {**extra, **identity}
            stamp["space"] = stamp.pop("space")  # last
            for key, value in stamp.items():
                study.set_user_attr(key, value)
        else:
            for key, value in identity.items():
                if attrs.get(key) != value:
                    differs = f"{key} ({value!r})"
                    if key == "settings_key" and isinstance(attrs.get("eval_config"), dict):
                        try:
                            stored = EvalConfig.from_dict(attrs["eval_config"]).keyed_settings()
                        except TypeError:  # a setting this version does not know
                            stored = attrs["eval_config"]
                        changed = settings_changes(stored, self.cfg.eval.keyed_settings())
                        differs = "evaluation settings: " + (", ".join(changed) if changed else "nasconv's version")
                    raise StorageError(
                        f"study {self.study_name!r} belongs to space {attrs.get('space')!r}, budget "
                        f"{attrs.get('budget')!r}, objectives {','.join(attrs.get('objectives') or [])} "
                        f"(evaluation settings {attrs.get('settings_key')}); it differs in {differs}; "
                        "use another --study name, or the study's settings to continue it")
        study.sampler = make_sampler(self.cfg.sampler, self.cfg.seed, len(self.cfg.objectives))
        return study

    def _reseed(self, trial_number: int) -> None:
        """Called with this driver's first trial, before it samples anything.

        Trial 0 of a study samples with --seed itself (reproducible). Any other first trial (a
        resumed study, a second driver) gets a seed derived from its number, unique in the study:
        with --seed alone, a resumed or a concurrent driver would replay the first one's proposals,
        and those would only come back from the cache.
        """
        if trial_number:
            seed = int(np.random.SeedSequence([self.cfg.seed, trial_number]).generate_state(1)[0])
            self.study.sampler = make_sampler(self.cfg.sampler, seed, len(self.cfg.objectives))

    def _make_runner(self) -> Any:
        if self._runner is not None:
            return self._runner
        from nasconv.runners import InlineRunner, RayRunner

        cpus = self.cfg.cpus_per_worker or max(1, (os.cpu_count() or 1) // self.cfg.workers)
        if self.cfg.runner == "inline":
            return InlineRunner(threads=cpus)
        return RayRunner(address=self.cfg.address, workers=self.cfg.workers, cpus_per_worker=cpus,
                         gpus_per_trial=self.cfg.gpus_per_trial)

    def recover(self) -> int:
        """Fail the RUNNING trials of drivers that died and queue their parameters again.

        Dead means: on this host, the driver's process is gone (known at once); anywhere, no
        heartbeat for GRACE_PERIOD_S; or a trial its driver never marked (it died right after
        asking) that is older than that. Each trial is failed once, with its reason, and queued
        once, even with several drivers recovering at the same time.
        """
        now = dt.datetime.now()
        try:
            stale = set(self.storage._get_stale_trial_ids(self.study._study_id))
        except Exception:  # pragma: no cover - a storage without Optuna's heartbeat internals
            stale = set()
        recovered = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            driver = str(t.user_attrs.get("driver", ""))
            if _driver_dead(driver):
                reason = f"its driver ({driver}) died"
            elif t._trial_id in stale:
                reason = f"its driver ({driver or 'unknown'}) sent no heartbeat for over {GRACE_PERIOD_S} s"
            elif not driver and t.datetime_start and (now - t.datetime_start).total_seconds() > GRACE_PERIOD_S:
                reason = "its driver died before marking it"
            else:
                continue
            if self._fail_and_requeue(t, reason):
                recovered += 1
        return recovered

    def _fail_and_requeue(self, t: optuna.trial.FrozenTrial, reason: str) -> bool:
        try:
            self.storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            # Row-locked check-and-set: of several drivers recovering this trial, one succeeds.
            ok = self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        if ok and t.params:
            self.study.enqueue_trial(t.params, skip_if_exists=False)
        return ok

    # --- counting -------------------------------------------------------------------------
    def _complete_trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    @staticmethod
    def _evaluated_in(complete: list[optuna.trial.FrozenTrial]) -> int:
        return sum(1 for t in complete if t.user_attrs.get("status") in ("evaluated", "cached"))

    def evaluated_count(self) -> int:
        return self._evaluated_in(self._complete_trials())

    def _take_evaluated(self) -> int:
        """The evaluated count as the snapshot taken since the last call read it (saves reading
        the study again on the hot path), else read afresh."""
        n, self.last_evaluated = self.last_evaluated, None
        return self.evaluated_count() if n is None else n

    # --- objective values -----------------------------------------------------------------
    def _values(self, metrics: dict[str, Any]) -> list[float] | None:
        vals = []
        for o in self.cfg.objectives:
            v = metrics.get(OBJECTIVES[o][0])
            if v is None or not math.isfinite(float(v)):
                return None
            vals.append(float(v))
        return vals

    def _placeholder_values(self, cost: Any) -> list[float]:
        """Objective values for an over-budget candidate that is never evaluated: pessimistic
        estimates (the sampler ranks infeasible trials by their constraint violation first)."""
        done = [t for t in self._complete_trials() if t.user_attrs.get("status") in ("evaluated", "cached")]
        out = []
        for o in self.cfg.objectives:
            if o == "macs":
                out.append(float(cost.macs))
            elif o == "params":
                out.append(float(cost.params))
            elif o == "accuracy":
                scores = [t.user_attrs["score"] for t in done if t.user_attrs.get("score") is not None]
                out.append(0.0 if self.cfg.eval.proxy == "train" or not scores else min(scores) - 1.0)
            else:  # latency: scale the observed ms-per-MAC to this candidate
                ratios = [t.user_attrs["latency_ms"] / t.user_attrs["macs"] for t in done
                          if t.user_attrs.get("latency_ms")]
                out.append(cost.macs * (statistics.median(ratios) if ratios else 5e-8))
        return out

    def _constraints(self, trial: optuna.trial.Trial, cost: Any, latency_ms: float | None) -> list[float]:
        vals = self.budget.constraints(macs=cost.macs, params=cost.params, latency_ms=latency_ms)
        keys = [k for k, v in (("macs", self.budget.macs), ("params", self.budget.params),
                               ("latency", self.budget.latency_ms)) if v is not None]
        for k, v in zip(keys, vals):
            trial.set_constraint(k, v)
        return vals

    # --- front ----------------------------------------------------------------------------
    def _losses(self, trials: list[optuna.trial.FrozenTrial]) -> np.ndarray:
        sign = np.array([-1.0 if d == "maximize" else 1.0 for d in self.directions])
        return np.array([t.values for t in trials], dtype=float) * sign

    def front_and_hv(self, complete: list[optuna.trial.FrozenTrial] | None = None
                     ) -> tuple[list[optuna.trial.FrozenTrial], float]:
        """The feasible Pareto front of the evaluated trials (what ``Study.best_trials`` gives,
        from one read of the study's complete trials, passed in when the caller has them) and
        its hypervolume."""
        complete = self._complete_trials() if complete is None else complete
        front = first_per_architecture([t for t in _get_pareto_front_trials_by_trials(
                 complete, self.study.directions, consider_constraint=_is_constrained_optimization(complete))
                 if t.user_attrs.get("status") in ("evaluated", "cached")])
        if not front:
            return [], 0.0
        if self.hv_ref is None:
            self.hv_ref = self.study.user_attrs.get("hv_reference")
        if self.hv_ref is None:
            # The first driver to get here decides; concurrent ones adopt its point.
            self.hv_ref = self.tables.setdefault(self.study_name, "hv_reference", self._reference_point(front))
            self.study.set_user_attr("hv_reference", self.hv_ref)
        losses = self._losses(front)
        ref = np.array(self.hv_ref)
        inside = losses[(losses < ref).all(axis=1)]
        if len(inside) == 0:
            return front, 0.0
        from optuna._hypervolume import compute_hypervolume

        return front, float(compute_hypervolume(inside, ref))

    def _reference_point(self, front: list[optuna.trial.FrozenTrial]) -> list[float]:
        """Fixed once per study (stored), so that hypervolumes over time are comparable."""
        losses = self._losses(front)
        bounds = self.space.cost_bounds()
        base = self.study.user_attrs.get("baseline") or {}
        ref = []
        for j, o in enumerate(self.cfg.objectives):
            if o == "accuracy":
                ref.append(0.0 if self.cfg.eval.proxy == "train" else float(losses[:, j].max() + 1.0))
            elif o == "latency":
                worst = max(float(losses[:, j].max()), float(base.get("latency_ms") or 0))
                ref.append(2.0 * worst)
            elif o == "macs":
                ref.append(float(self.budget.macs or bounds["max_macs"]) * 1.0001)
            else:
                ref.append(float(self.budget.params or bounds["max_params"]) * 1.0001)
        return ref

    def snapshot(self, trial_number: int) -> None:
        complete = self._complete_trials()
        front, hv = self.front_and_hv(complete)
        self.last_front, self.last_hv = front, hv
        n = self.last_evaluated = self._evaluated_in(complete)
        fault_point("during_snapshot", trial_number)
        self.tables.add_snapshot(self.study_name, FrontSnapshot(trial_number, n, [t.number for t in front], hv))

    def _catch_up_snapshot(self, evaluated: int) -> None:
        """A driver that died between a tell and its snapshot left the last snapshot behind."""
        last = self.tables.last_snapshot(self.study_name)
        if last is None or last.n_complete != evaluated:
            self.snapshot(max(t.number for t in self._complete_trials()))

    # --- main loop ------------------------------------------------------------------------
    def _pending(self) -> int:
        """Trials waiting for an evaluation (several may wait for one architecture)."""
        return sum(len(ts) for ts in self.jobs.values())

    def run(self) -> SearchResult:
        progress = Progress(self.cfg.progress, self.cfg.trials)
        runner = None
        interrupted = False
        max_fail = self.cfg.max_failures if self.cfg.max_failures is not None else max(10, self.cfg.trials)
        max_rej = self.cfg.max_rejections if self.cfg.max_rejections is not None else max(200, 50 * self.cfg.trials)
        rejected_in_a_row = 0
        critical = self.interrupts.critical
        _LIVE_DRIVERS.add(self.driver_id.rpartition(":")[2])
        try:
            self.recover()
            runner = self._make_runner()
            self.interrupts.install()  # after Ray's init, which may set its own handlers
            self.heartbeat.start()
            baseline = self._baseline(runner)
            evaluated = self.evaluated_count()
            self.counts["rejected"] = sum(1 for t in self._complete_trials()
                                          if t.user_attrs.get("status") == "rejected")
            self.counts["failed"] = len(self.study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
            if evaluated:
                self.last_front, self.last_hv = self.front_and_hv()
                with critical():
                    self._catch_up_snapshot(evaluated)

            def show(event: str = "") -> None:
                progress.update(evaluated=evaluated, running=runner.in_flight, front=len(self.last_front),
                                hv=self.last_hv, event=event, **self.counts)

            show()
            last_recovery = time.monotonic()
            while True:
                if time.monotonic() - last_recovery > HEARTBEAT_INTERVAL_S:
                    # Also while running: a driver beside this one that dies leaves its trials
                    # to this one (its parameters come back here as queued trials).
                    last_recovery = time.monotonic()
                    with critical():
                        self.recover()
                # Ask while there is room: never more in flight than workers, nor more trials
                # waiting than are left to evaluate.
                while runner.in_flight < runner.capacity and evaluated + self._pending() < self.cfg.trials:
                    with critical():
                        outcome = self._ask_one(runner)
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
                        show("cached")
                if runner.in_flight == 0 and evaluated >= self.cfg.trials:
                    break
                done = runner.wait(timeout=0.5)  # an inline evaluation runs here: interruptible
                with critical():
                    for key, metrics, error in done:
                        self._finish(key, metrics, error)
                if done:
                    evaluated = self._take_evaluated()
                for key, metrics, error in done:
                    show("error" if error else "done")
                    if self.counts["failed"] > max_fail:
                        raise NasconvError(f"{self.counts['failed']} evaluations failed (more than {max_fail}); "
                                           f"last: {error}")
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            self._abandon(runner, "interrupted (Ctrl-C)" if interrupted else
                          f"the driver stopped: {type(exc).__name__}: {str(exc).strip()[:200]}")
            if not interrupted and is_database_locked(exc):
                raise locked_error(self.cfg.storage) from None
            raise
        finally:
            _LIVE_DRIVERS.discard(self.driver_id.rpartition(":")[2])
            self.interrupts.uninstall()
            self.heartbeat.stop.set()
            progress.close()
            if runner is not None and self._runner is None:
                runner.shutdown()
            if interrupted:
                try:
                    self.snapshot(-1)
                except Exception:
                    pass
            self.tables.dispose()
        return self.result(baseline, interrupted)

    def _abandon(self, runner: Any, reason: str) -> None:
        """Fail (and queue again) the trials still waiting for an evaluation when the driver stops
        early, so that none stays RUNNING; what cannot be written now, the next driver's
        recover() does."""
        if runner is not None:
            try:
                runner.cancel_all()
            except Exception:
                pass
        for key in list(self.jobs):
            try:
                self._fail_job(key, reason, requeue=True)
            except Exception:
                self.jobs.pop(key, None)

    def _baseline(self, runner: Any) -> dict[str, Any] | None:
        """The space's all-standard network, evaluated once for reference (it may be over budget)."""
        if not self.cfg.evaluate_baseline:
            return None
        if "baseline" in self.study.user_attrs:
            return self.study.user_attrs["baseline"]
        arch = self.space.baseline()
        metrics = self.tables.get_cached(self.settings_key, arch.arch_hash)
        if metrics is None:
            runner.submit("__baseline__", self.evaluator, arch.to_dict(), self.cfg.eval.to_dict())
            done: list = []
            while not done:
                done = runner.wait(timeout=1.0)
            _, metrics, error = done[0]
            if error:
                raise NasconvError(f"the baseline evaluation failed: {error}")
            self.tables.put_cached(self.settings_key, arch.arch_hash, self.space.name, metrics)
        keep = {k: metrics.get(k) for k in ("accuracy", "score", "latency_ms", "params", "macs", "arch_hash")}
        self.study.set_user_attr("baseline", keep)
        return keep

    def _ask_one(self, runner: Any) -> str:
        trial = self.study.ask()
        try:
            return self._propose(runner, trial)
        except Exception as exc:
            self.heartbeat.remove(trial._trial_id)
            for key, ts in list(self.jobs.items()):
                if trial in ts:
                    ts.remove(trial)
                if not ts:
                    del self.jobs[key]
            if isinstance(exc, (optuna.exceptions.UpdateFinishedTrialError, ValueError)) \
                    and _finished(self.storage, trial):
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
        self.heartbeat.add(trial._trial_id)
        fault_point("after_ask", trial.number)
        if not self._seeded:
            self._seeded = True
            self._reseed(trial.number)
        arch = suggest_arch(trial, self.space, ordinal=self.ordinal, by_family=self.by_family)
        cost = estimate_cost(arch)
        attrs = {"arch": arch.to_dict(), "arch_hash": arch.arch_hash, "ops": arch.ops_label(),
                 "macs": cost.macs, "params": cost.params}
        over = self.budget.violations(macs=cost.macs, params=cost.params)
        if over:
            set_user_attrs(trial, {**attrs, "status": "rejected", "reject_reason": "over budget: " + "; ".join(over)})
            self._constraints(trial, cost, None)
            self.study.tell(trial, self._placeholder_values(cost))
            self.heartbeat.remove(trial._trial_id)
            self.counts["rejected"] += 1
            return "rejected"
        set_user_attrs(trial, attrs)
        cached = self.tables.get_cached(self.settings_key, arch.arch_hash)
        if cached is not None:
            self.heartbeat.remove(trial._trial_id)
            if self._tell_metrics(trial, cached, status="cached"):
                self.counts["cached"] += 1
            return "cached"
        if arch.arch_hash in self.jobs:  # the same architecture is already being evaluated
            self.jobs[arch.arch_hash].append(trial)
            return "attached"
        self.jobs[arch.arch_hash] = [trial]
        self.job_arch[arch.arch_hash] = arch
        evaluator = self.evaluator
        if self.cfg.keep_weights and evaluator is evaluate:
            from nasconv.evaluate import evaluate_keeping_weights as evaluator
        runner.submit(arch.arch_hash, evaluator, arch.to_dict(), self.cfg.eval.to_dict())
        return "submitted"

    def _tell_metrics(self, trial: optuna.trial.Trial, metrics: dict[str, Any], *, status: str) -> bool:
        """Tell one evaluated (or cached) trial; False when another driver had failed it already
        (its parameters are queued again, and this result is in the cache for them)."""
        attrs = trial.user_attrs
        cost = dataclasses.make_dataclass("C", ["macs", "params"])(attrs["macs"], attrs["params"])
        try:
            values = self._values(metrics)
            attrs = {k: metrics[k] for k in TRIAL_ATTRS if metrics.get(k) is not None}
            attrs["status"] = status
            if values is None:
                attrs["fail_reason"] = "the evaluation gave no finite value for every objective"
            set_user_attrs(trial, attrs)
            if values is None:
                self.study.tell(trial, state=TrialState.FAIL)
                self.counts["failed"] += 1
                return True
            self._constraints(trial, cost, metrics.get("latency_ms"))
            self.study.tell(trial, values)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            if not _finished(self.storage, trial):
                raise
            return False
        fault_point("after_tell", trial.number)
        self.snapshot(trial.number)
        return True

    def _finish(self, key: str, metrics: dict[str, Any] | None, error: str | None) -> None:
        if error is not None:
            self._fail_job(key, error, requeue=False)
            return
        payload = metrics.pop("weights", None) if metrics is not None else None
        if payload is not None:  # tensors: kept beside the database, never in the JSON cache
            from nasconv.export import save_weights

            save_weights(self.cfg.storage, self.study_name, key, payload)
        if metrics is not None:
            # Cached before told: if this driver dies in between, the next one fails the RUNNING
            # trial, queues its parameters again, and the re-asked trial takes this result from
            # the cache instead of evaluating the architecture a second time.
            self.tables.put_cached(self.settings_key, key, self.space.name, metrics)
        fault_point("before_tell", key)
        self.job_arch.pop(key, None)
        trials = self.jobs.pop(key, [])
        for i, trial in enumerate(trials):
            self.heartbeat.remove(trial._trial_id)
            if self._tell_metrics(trial, metrics, status="evaluated" if i == 0 else "cached") and i:
                self.counts["cached"] += 1

    def _fail_job(self, key: str, reason: str, *, requeue: bool) -> None:
        self.job_arch.pop(key, None)
        trials = self.jobs.get(key, [])
        while trials:
            trial = trials[0]
            self.heartbeat.remove(trial._trial_id)
            try:
                trial.set_user_attr("fail_reason", reason)
                self.study.tell(trial, state=TrialState.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                if not _finished(self.storage, trial):
                    raise
                trials.pop(0)  # failed and queued again by another driver already
                continue
            trials.pop(0)
            self.counts["failed"] += 1
            if requeue and trial.params:
                self.study.enqueue_trial(trial.params, skip_if_exists=False)
        self.jobs.pop(key, None)

    def result(self, baseline: dict[str, Any] | None, interrupted: bool) -> SearchResult:
        return SearchResult(
            study_name=self.study_name, storage=self.cfg.storage, evaluated=self.evaluated_count(),
            failed=self.counts["failed"], rejected=self.counts["rejected"], cached=self.counts["cached"],
            front=[trial_summary(t) for t in sorted(self.last_front, key=lambda t: t.number)],
            hypervolume=self.last_hv, baseline=baseline, interrupted=interrupted)




def run_search(cfg: SearchConfig, *, evaluator: Callable[..., dict[str, Any]] = evaluate,
               runner: Any = None) -> SearchResult:
    """Run (or continue) the study until it holds ``cfg.trials`` evaluated candidates."""
    return SearchDriver(cfg, evaluator=evaluator, runner=runner).run()
