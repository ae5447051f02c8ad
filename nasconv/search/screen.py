"""One-shot screening in the search (``nasconv search --screen oneshot``).

Before the search's loop, three steps:

1. **The supernet** of the space at the study's rung-0 proxy (:mod:`nasconv.supernet`): a
   checkpoint of the same identity (space content, data, proxy settings, seed, budget, steps)
   beside the storage is reused, else trained or resumed in this process, checkpointed; the
   search's ``--time`` stops it cleanly (the checkpoint is kept; the same command resumes).
2. **The screening study** ``<study>.oneshot`` in the same storage, the main study's directions,
   seeded TPE: each trial's architecture comes from the main study's ``suggest_arch`` (the same
   parameter names and encoding), is costed and, over budget, told infeasible by the driver's own
   code (:meth:`~nasconv.search.trials.TrialFlow._costed`); a feasible one is scored by the
   supernet's weights (:meth:`~nasconv.supernet.TrainedSupernet.evaluate_subnet`, with Ray on one
   actor that loads the checkpoint once) and told the main study's objectives (latency: the
   latency model's prediction). Scores are kept in nasconv's evaluation cache under the
   supernet's settings key, so a resumed search reuses them. It runs until the study holds
   ``--screen-count`` scored candidates, or the deadline.
3. **Promotion**: the scored candidates by non-dominated rank (ties: the higher one-shot
   accuracy first) are queued into the main study, as many as its ``--trials`` still has room
   for and none it already holds, carrying ``oneshot_accuracy``, ``oneshot_accuracy_ci`` and
   ``screen_trial``. The loop then trains them stand-alone (rung 0, and rungs above as always):
   the front stands on stand-alone evaluations only.

Why 100 screened by default: a subnet's one-shot evaluation costs about a tenth of a brief
training (6.5 against 67 CPU-s per candidate on Fashion-MNIST resnet20,
``benchmarks/results/oneshot_fashion-mnist.md``), so 100 screened cost about ten brief trainings
(plus the supernet's own training, shared by every study of the same settings), while giving the
sampler five times a default study's 20 candidates to learn the stage x family structure from.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

import nasconv._optuna as _optuna
from nasconv.arch import ArchSpec
from nasconv.errors import BudgetError, SpaceError, StorageError, UsageError
from nasconv.evaluate import EvalConfig
from nasconv.results import EVALUATED
from nasconv.results.trust import screen_study_name
from nasconv.search.config import DEFAULT_SCREEN_COUNT
from nasconv.search.liveness import CARRIED_ATTRS, recover
from nasconv.search.objectives import TRIAL_ATTRS, metric_names, objective_values, set_constraints
from nasconv.search.params import suggest_arch
from nasconv.search.samplers import make_sampler
from nasconv.spaces import SearchSpace
from nasconv.storage import StudyLock
from nasconv.storage.weights import dir_beside_storage
from nasconv.supernet import FIDELITY, ProxySettings, SupernetConfig, TrainedSupernet, estimate_memory, train_supernet
from nasconv.supernet.memory import check_fits
from nasconv.supernet.store import SUPERNET_DIR_ENV, identity_key, read_checkpoint
from nasconv.supernet.train import DEFAULT_STEPS, locate, step_bar

#: what a main-study trial queued from screening carries (kept when it is queued again)
PROMOTED_ATTRS = CARRIED_ATTRS


def supernet_folder(storage: str) -> Any:
    """Where supernets are checkpointed: beside the storage (``supernets/``; ``$NASCONV_SUPERNET_DIR``)."""
    return dir_beside_storage(storage, SUPERNET_DIR_ENV, "supernets")


def check_screenable(space: Any, eval_cfg: EvalConfig) -> None:
    """Refuse, in one line and before anything is stored or allocated, a space the supernet does
    not cover (a user's own model, a stage without an operator fitting its proxy widths) or a
    supernet larger than the evaluation device's memory (with the estimate)."""
    if not isinstance(space, SearchSpace):
        raise UsageError(f"--screen oneshot covers nasconv's residual backbones; space {getattr(space, 'name', '?')!r} "
                         f"is a user's own model (kind: {getattr(space, 'kind', '?')}): drop --screen")
    t = eval_cfg.train
    try:
        est = estimate_memory(space, ProxySettings.of(t, space.num_classes), batch_size=t.batch_size, seed=t.seed)
    except SpaceError as exc:
        raise UsageError(f"--screen oneshot: {exc}") from None
    check_fits(est, space.name, eval_cfg.device)


def check_latency_source(cfg: Any, budget: Any, gate: Any) -> str | None:
    """A latency budget is screened on the latency model's prediction: refused in one line where
    this device has no table (``gate``: the search's :class:`LatencyGate`). A latency objective
    without a table is screened on MACs in its place (the returned note says so); the candidates
    trained stand-alone have their latency measured as in any search."""
    if gate.model is not None:
        return None
    if budget.latency_ms is not None:
        raise UsageError("--screen oneshot checks a latency budget on this device's latency table, and there is none "
                         "for this setting: make it with `nasconv latency profile`, or drop latency from --budget")
    if "latency" in cfg.objectives:
        return ("note: no latency table for this device, so screening ranks on MACs in latency's place; the "
                "candidates trained stand-alone have their latency measured (`nasconv latency profile` makes a "
                "table, and screening then ranks on predicted latency)")
    return None


def nondominated_ranks(losses: np.ndarray) -> np.ndarray:
    """Each row's non-dominated front (0: not dominated by any row), every column minimised."""
    x = np.asarray(losses, dtype=float)
    n = len(x)
    ranks = np.full(n, -1, dtype=int)
    if n == 0:
        return ranks
    x = x.reshape(n, -1)
    # dominates[i, j]: row i is no worse than row j everywhere and better somewhere
    dominates = (x[:, None, :] <= x[None, :, :]).all(-1) & (x[:, None, :] < x[None, :, :]).any(-1)
    left = np.ones(n, dtype=bool)
    rank = 0
    while left.any():
        idx = np.flatnonzero(left)
        front = idx[~dominates[np.ix_(idx, idx)].any(0)]
        ranks[front] = rank
        left[front] = False
        rank += 1
    return ranks


def promotion_order(trials: Sequence[optuna.trial.FrozenTrial],
                    directions: Sequence[str]) -> list[optuna.trial.FrozenTrial]:
    """``trials`` by non-dominated rank of their values, within a front the higher accuracy first."""
    if not trials:
        return []
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    ranks = nondominated_ranks(np.array([t.values for t in trials], dtype=float) * sign)
    return [trials[i] for i in sorted(range(len(trials)),
                                      key=lambda i: (ranks[i], -float(trials[i].user_attrs.get("accuracy", 0.0)),
                                                     trials[i].number))]


def _feasible(t: optuna.trial.FrozenTrial) -> bool:
    return all(v <= 0 for v in (t.constraints or {}).values())


_LOADS = 0  # supernets loaded in this process (a Ray actor reports its own)


class SubnetScorer:
    """What runs on the actor: the trained supernet, loaded once, scoring many architectures."""

    def __init__(self, space: SearchSpace, cfg: SupernetConfig, folder: str) -> None:
        global _LOADS
        self.loaded = TrainedSupernet.load(space, cfg, folder)
        _LOADS += 1
        self.scored = 0

    def settings_key(self) -> str:
        return self.loaded.settings_key

    def score(self, arch_dict: dict[str, Any]) -> dict[str, Any]:
        self.scored += 1
        return self.loaded.evaluate_subnet(ArchSpec.from_dict(arch_dict))

    def stats(self) -> dict[str, int]:
        """Supernets loaded in this actor's process, and architectures this actor scored."""
        return {"loads": _LOADS, "scored": self.scored}


class Screening:
    """One-shot screening for one search driver (its space, budget, storage, deadline, latency
    gate and budget code; the driver checks :func:`check_screenable` and :func:`check_latency_source`
    before it writes the storage); :meth:`run` before the driver's loop."""

    def __init__(self, driver: Any) -> None:
        self.d = driver
        cfg = driver.cfg
        self.count = cfg.screen_count
        self.name = screen_study_name(driver.study_name)
        #: a latency objective without a latency table: screened on MACs (check_latency_source)
        self.macs_for_latency = "latency" in cfg.objectives and driver.latency.model is None
        # absolute: the scoring actor may run in another working directory (a Ray worker)
        self.folder = str(Path(supernet_folder(cfg.storage)).resolve())
        self.info: dict[str, Any] = {"study": self.name, "count": self.count, "screened": 0, "scored": 0, "cached": 0,
                                     "rejected": 0, "promoted": 0, "stopped_on_time": False}

    def supernet_config(self) -> SupernetConfig:
        return SupernetConfig(eval=replace(self.d.eval0, latency=False), budget=self.d.budget,
                              steps=self.d.cfg.supernet_steps or DEFAULT_STEPS)

    def summary(self) -> dict[str, Any]:
        return dict(self.info)

    def _say(self, text: str) -> None:
        if self.d.cfg.progress:
            print(text, flush=True)

    # --- the steps ----------------------------------------------------------------------------
    def run(self, runner: Any) -> None:
        d = self.d
        sn_cfg = self.supernet_config()
        _, ds, ident, path = locate(d.space, sn_cfg, self.folder)
        self.info.update(supernet=str(path), supernet_steps=sn_cfg.steps)
        study = self._open_study(identity_key(ident), sn_cfg)
        recover(study, d.storage)  # a dead driver's screening trial: failed, its parameters queued again
        done = self._screened(study)
        if done < self.count:
            if not self._train(sn_cfg, ds, ident, path):
                self.info.update(screened=done, stopped_on_time=True)
                return
            done = self._screen(study, runner, sn_cfg, done)
        self.info["screened"] = done
        study.set_user_attr("scored", done)  # what the trust line counts (over-budget proposals left out)
        if done < self.count:  # the deadline: promoted once the screen is whole (a resume finishes it)
            self.info["stopped_on_time"] = True
            return
        with d.interrupts.critical():
            self.info["promoted"] = self._promote(study)
        self._say(f"one-shot screening: {done} candidate(s) scored in study {self.name}; "
                  f"{self.info['promoted']} queued for stand-alone training")

    def _open_study(self, supernet_key: str, sn_cfg: SupernetConfig) -> optuna.Study:
        d = self.d
        study = optuna.create_study(study_name=self.name, storage=d.storage, directions=d.directions,
                                    load_if_exists=True)
        if [x.name.lower() for x in study.directions] != list(d.directions):
            raise StorageError(f"study {self.name!r} optimises other directions than {d.study_name!r}; delete it "
                               f"(optuna delete-study --study-name {self.name}) or use another --study name")
        stored = study.user_attrs.get("supernet_key")
        if stored is None:
            for k, v in {"screen_of": d.study_name, "fidelity": FIDELITY, "objectives": list(d.cfg.objectives),
                         "latency_stand_in": "macs" if self.macs_for_latency else None,
                         "supernet_steps": sn_cfg.steps, "supernet_key": supernet_key}.items():
                study.set_user_attr(k, v)
            study.set_metric_names(metric_names(d.cfg.objectives, "train"))
        elif stored != supernet_key:
            steps = study.user_attrs.get("supernet_steps")
            raise StorageError(f"study {self.name!r} was screened by another supernet ({steps} steps, key {stored}; "
                               f"now {sn_cfg.steps} steps, key {supernet_key}): use its --supernet-steps, or another "
                               "--study name")
        n = len(study.get_trials(deepcopy=False))
        # trial 0 samples with --seed; a resumed screen with a seed of its own (no replayed proposals)
        seed = d.cfg.seed if n == 0 else int(np.random.SeedSequence([d.cfg.seed, n, 1]).generate_state(1)[0])
        study.sampler = make_sampler("tpe", seed, len(d.cfg.objectives))
        return study

    @staticmethod
    def _screened(study: optuna.Study) -> int:
        return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.user_attrs.get("status") in EVALUATED)

    def _train(self, sn_cfg: SupernetConfig, ds: Any, ident: dict[str, Any], path: Any) -> bool:
        """The supernet trained to its steps (True), or stopped by the deadline (False)."""
        d = self.d
        step = int(read_checkpoint(path, ident)["step"]) if path.exists() else 0  # a corrupt one: its line
        if step >= sn_cfg.steps:
            self.info.update(supernet_step=step, supernet_finished=True)
            self._say(f"one-shot screening: supernet reused ({path})")
            return True
        remaining = None
        if d.deadline.active:
            remaining = (d.deadline.budget_s or 0.0) - d.deadline.elapsed_s()
            if remaining <= 0:
                self.info.update(supernet_step=step, supernet_finished=False)
                return False
        self._say(f"one-shot screening: {'resuming' if step else 'training'} the {d.space.name} supernet "
                  f"({step}/{sn_cfg.steps} steps) in {path.parent}")
        with step_bar(sn_cfg.steps, initial=step, desc=f"{d.space.name} supernet", show=d.cfg.progress) as progress:
            out = train_supernet(d.space, sn_cfg, self.folder, ds=ds, time_limit_s=remaining, progress=progress,
                                 clock=d.deadline.clock)
        self.info.update(supernet_step=out.step, supernet_finished=out.finished,
                         supernet_train_time_s=out.train_time_s)
        if not out.finished:
            self._say(f"one-shot screening: the --time budget ran out while training the supernet ({out.step}/"
                      f"{out.steps} steps, checkpoint kept); the same command resumes it")
        return out.finished

    def _screen(self, study: optuna.Study, runner: Any, sn_cfg: SupernetConfig, done: int) -> int:
        d = self.d
        make = getattr(runner, "actor", None)
        actor = (make or _Here)(SubnetScorer, d.space, sn_cfg, self.folder)
        bar = None
        if d.cfg.progress and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=self.count, initial=done, desc="one-shot screening", unit="cand", file=sys.stderr)
        max_rej = max(200, 50 * self.count)
        in_a_row = 0
        try:
            key = actor.call("settings_key")
            self.info["settings_key"] = key
            while done < self.count and not d.deadline.passed():
                outcome = self._one(study, actor, key)
                if outcome in ("rejected", "failed"):
                    in_a_row += 1
                    if in_a_row > max_rej:
                        raise BudgetError(f"the screening sampler proposed {in_a_row} over-budget (or unscorable) "
                                          f"candidates in a row; the budget {d.budget.text} leaves too little of "
                                          f"{d.space.name}")
                    continue
                in_a_row = 0
                done += 1
                if bar is not None:
                    bar.update(1)
            self.info.update({f"actor_{k}": v for k, v in actor.call("stats").items()})
        finally:
            if bar is not None:
                bar.close()
            actor.close()
        return done

    def _one(self, study: optuna.Study, actor: Any, key: str) -> str:
        """Ask, cost, score and tell one screening trial: "rejected", "failed", "evaluated" or "cached"."""
        d = self.d
        trial = study.ask()
        tid = _optuna.trial_id(trial)
        d.heartbeat.add(tid)
        try:
            trial.set_user_attr("driver", d.driver_id)
            arch = suggest_arch(trial, d.space, ordinal=d.ordinal, by_family=d.by_family)
            with d.interrupts.critical():
                attrs, decision = d._costed(study, trial, arch)
            if decision is None:
                self.info["rejected"] += 1
                return "rejected"
            metrics, status = d.tables.get_cached(key, arch.arch_hash), "cached"
            if metrics is None:
                metrics, status = actor.call("score", arch.to_dict()), "evaluated"
                d.tables.put_cached(key, arch.arch_hash, d.space.name, metrics)
            metrics = d.latency.fill(metrics, decision.prediction)
            values = objective_values({**metrics, "latency_ms": float(attrs["macs"])} if self.macs_for_latency
                                      else metrics, d.cfg.objectives)
            kept = {k: metrics[k] for k in TRIAL_ATTRS if metrics.get(k) is not None}
            with d.interrupts.critical():
                _optuna.set_user_attrs(trial, {**attrs, **kept, "status": status, "fidelity": FIDELITY,
                                               "settings_key": key, "supernet_steps": metrics.get("supernet_steps"),
                                               **({"latency_stand_in": "macs"} if self.macs_for_latency else {})})
                if values is None:
                    trial.set_user_attr("fail_reason", "the one-shot evaluation gave no finite objective value")
                    study.tell(trial, state=TrialState.FAIL)
                    return "failed"
                set_constraints(trial, d.budget, attrs["macs"], attrs["params"], metrics.get("latency_ms"))
                study.tell(trial, values)
            self.info[status if status == "cached" else "scored"] += 1
            return status
        except BaseException as exc:
            with contextlib.suppress(Exception):  # never left RUNNING behind
                if study.get_trials(deepcopy=False)[trial.number].state == TrialState.RUNNING:
                    trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {str(exc).strip()[:200]}")
                    study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            d.heartbeat.remove(tid)

    def _promote(self, study: optuna.Study) -> int:
        """Queue the best screened candidates into the main study (see the module's text)."""
        d = self.d
        scored = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.user_attrs.get("status") in EVALUATED and _feasible(t)]
        order = promotion_order(scored, d.directions)
        acc = d.cfg.objectives.index("accuracy") if "accuracy" in d.cfg.objectives else None
        n = 0
        with StudyLock(d.tables, d.study_name).held():  # the main study's claim lock
            main = d.study.get_trials(deepcopy=False)
            held = {t.user_attrs.get("arch_hash") for t in main} - {None}
            from_screen = {t.user_attrs.get("screen_trial") for t in main} - {None}
            evaluated, in_flight = d._slots_taken()
            waiting = sum(1 for t in main if t.state == TrialState.WAITING)
            room = d.cfg.trials - evaluated - in_flight - waiting
            for t in order:
                if n >= room:
                    break
                h = t.user_attrs.get("arch_hash")
                if h in held or t.number in from_screen:
                    continue
                a = t.values[acc] if acc is not None else t.user_attrs.get("accuracy")
                d.study.enqueue_trial(dict(t.params), skip_if_exists=False, user_attrs={
                    "oneshot_accuracy": a, "oneshot_accuracy_ci": list(t.user_attrs.get("accuracy_ci") or [a, a]),
                    "screen_trial": t.number})
                held.add(h)
                n += 1
        return n


class _Here:
    """An in-process stand-in for a runner without actors (a test's own runner)."""

    def __init__(self, cls: type, *args: Any) -> None:
        self.obj = cls(*args)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.obj, method)(*args)

    def close(self) -> None:
        self.obj = None


__all__ = ["DEFAULT_SCREEN_COUNT", "PROMOTED_ATTRS", "Screening", "SubnetScorer", "check_screenable",
           "nondominated_ranks", "promotion_order", "screen_study_name"]
