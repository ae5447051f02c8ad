"""Several drivers on one study: ``--trials`` is the study's exact total, on SQLite and PostgreSQL,
with 2 and 3 drivers, flat and with rungs (each promotion claimed and evaluated once, no rung row
twice); the study's claim lock (nasconv.storage.locks) that makes it so excludes drivers and dies
with its holder; a dead driver's rung claim is taken over, and a result recorded, by one driver only.

The drivers run as threads of the test process, each with its own driver, storage connections and
Optuna study object, as separate processes have them (tests/test_postgres.py and test_faults.py run
drivers as processes). Their claims are put in lockstep at the drivers' fault points: every driver
sets off to claim at the same moment, and the window between a claim's count and its ask is held
open, so that without the lock two drivers would count the same free slot.
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
import sys
import threading
import time
import uuid

import pytest
from optuna.trial import TrialState

import nasconv.search.trials as trials_module
from nasconv.evaluate import EvalConfig, evaluate
from nasconv.search import SearchConfig, run_search
from nasconv.search.liveness import driver_dead, mark_gone, mark_live, new_driver_id
from nasconv.storage import NasconvTables, StudyLock, open_study
from nasconv.train import TrainConfig

pytestmark = pytest.mark.slow

TRIALS = 5
TRAIN_IMAGES = 40


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return request.getfixturevalue("postgres_url")


def _cfg(storage: str, study: str, rungs: int) -> SearchConfig:
    ev = EvalConfig(data="synthetic", proxy="train" if rungs > 1 else "synflow", latency=False,
                    train=TrainConfig(train_images=TRAIN_IMAGES, val_images=40, batch_size=20, resolution=16))
    return SearchConfig(space="resnet20", budget="30mflops", trials=TRIALS, sampler="random", seed=1, storage=storage,
                        study_name=study, objectives=("accuracy", "macs"), eval=ev, runner="inline",
                        evaluate_baseline=False, progress=False, rungs=rungs, eta=2)


class Lockstep:
    """The drivers' claim fault points: their first claims set off together (a barrier before the
    claim lock), and the window from each claim's count to its ask is held open a moment; counts
    how many drivers were ever inside that window at once (1: the claims were atomic)."""

    HOLD_S = 0.05

    def __init__(self, drivers: int) -> None:
        self.barrier = threading.Barrier(drivers)
        self.mutex = threading.Lock()
        self.inside = self.most = self.counted = 0
        self.started: set[int] = set()

    def __call__(self, name: str, detail: object = "") -> None:
        if name == "before_claim" and threading.get_ident() not in self.started:
            self.started.add(threading.get_ident())
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait(timeout=120)
        elif name == "claim_counted":
            with self.mutex:
                self.inside += 1
                self.counted += 1
                self.most = max(self.most, self.inside)
            time.sleep(self.HOLD_S)
            with self.mutex:
                self.inside -= 1


def _run_drivers(cfg: SearchConfig, drivers: int, monkeypatch) -> tuple[list, list, Lockstep]:
    step = Lockstep(drivers)
    monkeypatch.setattr(trials_module, "fault_point", step)
    evaluations: list[tuple[str, int]] = []  # (arch hash, training images) of every evaluation run

    def evaluator(arch, config):
        evaluations.append((arch.arch_hash, config.train.train_images))
        return evaluate(arch, config)

    results: list = [None] * drivers
    errors: list[BaseException] = []

    def drive(i: int) -> None:
        try:
            results[i] = run_search(cfg, evaluator=evaluator)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            step.barrier.abort()  # a driver that failed to start: the others go on

    threads = [threading.Thread(target=drive, args=(i,), daemon=True) for i in range(drivers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(240)
    assert not any(th.is_alive() for th in threads), "a driver did not finish"
    assert not errors, errors
    return results, evaluations, step


@pytest.mark.parametrize("rungs", [1, 2], ids=["flat", "rungs"])
@pytest.mark.parametrize("drivers", [2, 3])
def test_trials_is_an_exact_total_over_drivers(storage, drivers, rungs, monkeypatch):
    study_name = f"drivers-{drivers}-{rungs}-{uuid.uuid4().hex[:8]}"
    results, evaluations, step = _run_drivers(_cfg(storage, study_name, rungs), drivers, monkeypatch)

    assert step.most == 1, "two drivers counted the study's free slots at the same time"
    assert step.counted >= TRIALS
    study, tables = open_study(study_name, storage)
    try:
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("status") in
                ("evaluated", "cached")]
        assert len(done) == TRIALS, f"{len(done)}/{TRIALS}"
        assert [r.evaluated for r in results] == [TRIALS] * drivers  # each driver reports the study's total
        assert not [t.number for t in trials if t.state == TrialState.RUNNING]
        assert len({t.user_attrs.get("driver") for t in trials}) == drivers, "every driver claimed trials"
        rung0 = [h for h, n in evaluations if n == TRAIN_IMAGES]
        assert len(rung0) <= TRIALS, "an evaluation beyond the study's total was started"
        assert tables.last_snapshot(study_name).n_complete == TRIALS
        rows, claims = tables.rung_results(study_name), tables.rung_claims(study_name)
    finally:
        tables.dispose()
    if rungs == 1:
        assert not rows and not claims
        return
    assert rows, "no promotion happened"
    assert not claims, "a claimed promotion was left without its result"
    keys = [(r.trial_number, r.rung, r.repeat) for r in rows]
    assert len(keys) == len(set(keys)), "a rung row twice"
    promoted = collections.Counter((h, n) for h, n in evaluations if n > TRAIN_IMAGES)
    assert all(c == 1 for c in promoted.values()), f"a promotion evaluated twice: {promoted}"
    assert sorted(promoted) == sorted((r.arch_hash, r.metrics["train_images"]) for r in rows)
    assert sum(r.promoted for r in results) == len(rows)


# --- the claim lock ---------------------------------------------------------------------------

_HOLDER = """
import sys, time
from nasconv.storage import NasconvTables, StudyLock
tables = NasconvTables(sys.argv[1])
with StudyLock(tables, sys.argv[2]).held():
    print("held", flush=True)
    time.sleep(120)
"""


def test_the_claim_lock_excludes_another_driver_and_dies_with_its_holder(storage):
    tables = NasconvTables(storage)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, storage, "s"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        entered = threading.Event()

        def claim():
            with StudyLock(tables, "s").held():
                entered.set()

        th = threading.Thread(target=claim, daemon=True)
        th.start()
        assert not entered.wait(0.5), "the lock was taken while another process held it"
        if not storage.startswith("sqlite"):  # a row per study (SQLite's: one lock file per database)
            with StudyLock(tables, "other study").held():
                pass
        holder.kill()  # a driver that dies while it holds the lock (SIGKILL: no clean-up)
        assert entered.wait(60), "a dead driver's lock was never released"
        th.join(10)
    finally:
        holder.kill()
        holder.wait()
        tables.dispose()


def test_a_dead_drivers_rung_claim_is_taken_over_by_one_driver_and_recorded_once(storage):
    tables = [NasconvTables(storage) for _ in range(3)]
    drivers = [new_driver_id() for _ in tables]
    dead = new_driver_id()  # a driver of this process that has ended: driver_dead() says so
    for d in drivers:
        mark_live(d)
    try:
        assert driver_dead(dead) and not driver_dead(drivers[0])
        assert tables[0].claim_rung("s", 3, 1, 0, "abc", dead, dead=driver_dead)
        start = threading.Barrier(len(tables))
        taken, recorded = [], []

        def take(t: NasconvTables, me: str) -> None:
            start.wait(30)
            if t.claim_rung("s", 3, 1, 0, "abc", me, dead=driver_dead):
                taken.append(me)
            start.wait(30)
            if t.record_rung("s", 3, 1, 0, "abc", [0.5, 1e6], {"by": me}):
                recorded.append(me)

        threads = [threading.Thread(target=take, args=(t, me)) for t, me in zip(tables, drivers)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert len(taken) == 1 and len(recorded) == 1, (taken, recorded)
        rows = tables[0].rung_results("s")
        assert [(r.trial_number, r.rung, r.repeat) for r in rows] == [(3, 1, 0)]
        assert rows[0].values == [0.5, 1e6] and rows[0].metrics == {"by": recorded[0]}
        assert not tables[0].rung_claims("s")
        # a live driver's claim is not taken over, and a recorded one is never claimed again
        assert tables[1].claim_rung("s", 4, 1, 0, "def", drivers[1], dead=driver_dead)
        assert not tables[2].claim_rung("s", 4, 1, 0, "def", drivers[2], dead=driver_dead)
        assert not tables[2].claim_rung("s", 3, 1, 0, "abc", drivers[2], dead=driver_dead)
    finally:
        for d in drivers:
            mark_gone(d)
        for t in tables:
            t.dispose()
