"""Fault tolerance of the search: a driver killed (SIGKILL) or interrupted (SIGINT) at chosen
points and run again, a worker killed mid-evaluation, drivers that died elsewhere, two drivers
on one SQLite file, a database locked for too long.

Kills are placed with the test hook of nasconv.faults.fault_point (NASCONV_TEST_CRASH_AT), and
every point passed is traced (NASCONV_TEST_TRACE) to count evaluations per architecture.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from nasconv import storage as nasconv_storage
from nasconv.errors import StorageError
from nasconv.evaluate import EvalConfig, evaluate
from nasconv.search import SearchConfig, SearchDriver, run_search, suggest_arch
from nasconv.train import TrainConfig

FAST = EvalConfig(data="synthetic", proxy="synflow", train=TrainConfig(resolution=16), zc_batch=8, latency=False)


def _cfg(storage: str, **kw) -> SearchConfig:
    base = dict(space="resnet20", budget="30mflops", trials=3, sampler="random", seed=0, storage=storage,
                study_name="s", objectives=("accuracy", "macs"), eval=FAST, runner="inline",
                evaluate_baseline=False, progress=False)
    base.update(kw)
    return SearchConfig(**base)


# --- the driver killed, then the same command again --------------------------------------------


@pytest.mark.parametrize("point", ["after_ask:3", "during_eval:2", "before_tell:2", "after_tell:2",
                                   "during_snapshot:2"])
def test_sigkill_then_rerun_resumes(search_cli, tmp_path, point):
    storage, trials, name = f"sqlite:///{tmp_path}/s.db", 3, point.split(":")[0]
    first = search_cli.run(storage, trials, env=search_cli.env(NASCONV_TEST_CRASH_AT=point))
    assert first.returncode == -signal.SIGKILL, first.stderr
    crashed_pid = search_cli.traced()[-1][2]
    running = search_cli.study(storage).get_trials(states=(TrialState.RUNNING,))
    # Killed while it held a trial (asked, or being evaluated, or evaluated but not told): that
    # trial is RUNNING. Killed after the tell: nothing is.
    assert len(running) == (1 if name in ("after_ask", "during_eval", "before_tell") else 0)

    second = search_cli.run(storage, trials)
    assert second.returncode == 0, second.stderr
    info = search_cli.check(storage, trials)
    study = info["study"]

    if running:
        # Same host, dead pid: failed by the next start at once (not after the heartbeat grace
        # period), with the reason, and its parameters asked again.
        victim = study.trials[running[0].number]
        assert victim.state == TrialState.FAIL
        # "died" with the pid is the at-once path (the pid checked dead on this host); a trial
        # failed after the grace period says "sent no heartbeat" instead (nasconv.search.liveness)
        assert "died" in victim.user_attrs["fail_reason"] and str(crashed_pid) in victim.user_attrs["fail_reason"]
        assert "no heartbeat" not in victim.user_attrs["fail_reason"]
        if victim.params:
            again = [t for t in study.trials if t.number > victim.number and t.params == victim.params]
            assert again and again[0].state == TrialState.COMPLETE
            if name == "before_tell":  # evaluated and cached before the crash: not evaluated again
                assert again[0].user_attrs["status"] == "cached"
    else:  # the trial told before the crash stayed as it was
        told = int([d for p, d, pid in search_cli.traced("after_tell") if pid == crashed_pid][-1])
        assert study.trials[told].state == TrialState.COMPLETE
        assert study.trials[told].user_attrs["status"] == "evaluated"

    # Evaluator calls per architecture, over both runs: one each, except the one whose
    # evaluation the kill cut short (twice: the cut one and the redo).
    calls = collections.Counter(d for p, d, pid in search_cli.traced("during_eval"))
    killed = [d for p, d, pid in search_cli.traced("during_eval") if pid == crashed_pid][-1:] \
        if name == "during_eval" else []
    assert {h: n for h, n in calls.items() if n > 1} == {h: 2 for h in killed}
    assert set(calls) == {t.user_attrs["arch_hash"] for t in info["done"]}


def test_sigint_stops_cleanly_then_rerun_completes(search_cli, tmp_path):
    storage, trials = f"sqlite:///{tmp_path}/s.db", 4
    proc = search_cli.start(storage, trials, slow=True)
    search_cli.wait_traced("during_eval", 2, proc)  # the second evaluation (2 s) has begun
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["nasconv: interrupted"]

    study = search_cli.study(storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.user_attrs["fail_reason"] for t in failed] == ["interrupted (Ctrl-C)"]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [failed[0].params]  # queued again

    again = search_cli.run(storage, trials, slow=True, env=search_cli.env(NASCONV_TEST_DELAY="nowhere:0"))
    assert again.returncode == 0, again.stderr
    info = search_cli.check(storage, trials)
    assert failed[0].params in [t.params for t in info["done"]]


# --- drivers that died elsewhere ---------------------------------------------------------------


def _age(db: str, sql: str, trial_id: int) -> None:
    with sqlite3.connect(db) as c:
        c.execute(sql, (trial_id,))


def test_recover_other_hosts_by_heartbeat_and_unmarked_trials_by_age(tmp_path):
    db = f"{tmp_path}/s.db"
    driver = SearchDriver(_cfg(f"sqlite:///{db}"))
    study, storage = driver.study, driver.storage

    def asked(mark: str | None):
        t = study.ask()
        suggest_arch(t, driver.space)
        if mark:
            t.set_user_attr("driver", mark)
        return t

    gone = asked("elsewhere:123:aaaa")  # another machine's driver, silent for 5 minutes
    storage.record_heartbeat(gone._trial_id)
    _age(db, "UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-300 seconds') WHERE trial_id = ?",
         gone._trial_id)
    alive = asked("elsewhere:456:bbbb")  # another machine's driver, still beating: left alone
    storage.record_heartbeat(alive._trial_id)
    unmarked = asked(None)  # its driver died between ask and mark, 5 minutes ago
    _age(db, "UPDATE trials SET datetime_start = datetime(datetime_start, '-300 seconds') WHERE trial_id = ?",
         unmarked._trial_id)
    young = asked(None)  # just asked by a live driver that has not marked it yet: left alone
    dead = subprocess.Popen(["true"])
    dead.wait()
    local = asked(f"{socket.gethostname()}:{dead.pid}:cccc")  # this host, process gone

    assert driver.recover() == 3
    state = {t.number: t for t in study.get_trials()}
    assert state[alive.number].state == state[young.number].state == TrialState.RUNNING
    reasons = {n: state[n].user_attrs.get("fail_reason") for n in (gone.number, unmarked.number, local.number)}
    assert "no heartbeat" in reasons[gone.number]
    assert "before marking" in reasons[unmarked.number]
    assert "died" in reasons[local.number]
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(TrialState.WAITING,))]
    assert sorted(map(str, waiting)) == sorted(str(state[n].params) for n in reasons)
    assert driver.recover() == 0  # each failed and queued once
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 3
    driver.tables.dispose()


def test_trial_failed_by_another_driver_meanwhile_is_not_fatal(tmp_path):
    """A driver too slow to beat (or one another driver took for dead) finds its trial failed
    and queued again when it tells: it goes on, and its result serves the queued trial."""
    storage = f"sqlite:///{tmp_path}/s.db"
    taken = []

    def evaluator(arch, config):
        if not taken:  # meanwhile, another driver's recover() takes this trial
            other = SearchDriver(_cfg(storage))
            (t,) = other.study.get_trials(states=(TrialState.RUNNING,))
            assert other._fail_and_requeue(t, "its driver sent no heartbeat (simulated)")
            other.tables.dispose()
            taken.append(t.number)
        return evaluate(arch, config)

    res = run_search(_cfg(storage), evaluator=evaluator)
    assert res.evaluated == 3
    study = optuna.load_study(study_name="s", storage=storage)
    lost = study.trials[taken[0]]
    assert lost.state == TrialState.FAIL and "simulated" in lost.user_attrs["fail_reason"]
    again = [t for t in study.trials if t.number > lost.number and t.params == lost.params]
    assert [t.user_attrs["status"] for t in again] == ["cached"]
    assert not study.get_trials(states=(TrialState.RUNNING,))


# --- a worker process killed mid-evaluation (Ray) ----------------------------------------------


@pytest.mark.slow
def test_worker_killed_mid_evaluation_is_retried_or_failed(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()

    def evaluator(arch, config):
        # The first architecture's worker dies once (Ray runs the task again); the second's on
        # every attempt (Ray's retries run out: the trial fails, with the reason).
        order = marks / "order"
        seen = order.read_text().split() if order.exists() else []
        if arch.arch_hash not in seen:
            with open(order, "a") as f:
                f.write(arch.arch_hash + "\n")
            seen.append(arch.arch_hash)
        with open(marks / arch.arch_hash, "a") as f:
            f.write(f"{os.getpid()}\n")
        attempt = len((marks / arch.arch_hash).read_text().split())
        if seen.index(arch.arch_hash) == 1 or (seen.index(arch.arch_hash) == 0 and attempt == 1):
            os.kill(os.getpid(), signal.SIGKILL)
        return evaluate(arch, config)

    storage = f"sqlite:///{tmp_path}/ray.db"
    res = run_search(_cfg(storage, trials=3, runner="ray", workers=1, cpus_per_worker=1), evaluator=evaluator)
    assert res.evaluated == 3
    first, second = (marks / "order").read_text().split()[:2]
    assert len((marks / first).read_text().split()) == 2  # killed once, retried
    assert len((marks / second).read_text().split()) == 3  # killed on all 1 + 2 retries
    study = optuna.load_study(study_name="s", storage=storage)
    by_arch = {t.user_attrs["arch_hash"]: t for t in study.trials if "arch_hash" in t.user_attrs}
    assert by_arch[first].state == TrialState.COMPLETE and by_arch[first].user_attrs["status"] == "evaluated"
    assert by_arch[second].state == TrialState.FAIL
    print("fail reason:", by_arch[second].user_attrs["fail_reason"])
    assert "Worker" in by_arch[second].user_attrs["fail_reason"] or "died" in by_arch[second].user_attrs["fail_reason"]
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_ray_worker_killed_leaves_search_json_on_stdout_alone(search_cli, tmp_path):
    # Ray prints "(raylet) A worker died ..." on the driver's stdout: under --json those lines
    # go to stderr, and stdout stays one JSON document.
    cmd = [c for c in search_cli.cmd(f"sqlite:///{tmp_path}/r.db", 2) if c != "--inline"]
    env = search_cli.env(NASCONV_TEST_CRASH_AT="during_eval:1", NASCONV_TEST_CRASH_MARK=str(tmp_path / "killed"))
    p = subprocess.run([*cmd, "--workers", "1", "--cpus-per-worker", "1"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "killed").exists()  # a worker did die mid-evaluation
    assert "worker died" in p.stderr.lower()
    res = json.loads(p.stdout)
    assert res["evaluated"] == 2 and res["failed"] == 0


# --- SQLite: two drivers on one file; a lock held too long -------------------------------------


def test_two_drivers_on_one_sqlite_file(search_cli, tmp_path):
    storage, trials = f"sqlite:///{tmp_path}/s.db", 4
    procs = [search_cli.start(storage, trials), search_cli.start(storage, trials)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert "Traceback" not in err and "database is locked" not in err, err
        # Either it worked, or it stopped with one line that points to PostgreSQL.
        assert p.returncode == 0 or (p.returncode == 1 and len(err.strip().splitlines()) == 1
                                     and "PostgreSQL" in err), (p.returncode, err)
    if any(p.returncode for p in procs):  # finish what a stopped driver left
        assert search_cli.run(storage, trials).returncode == 0
    info = search_cli.check(storage, trials, drivers=2)
    # No result lost: every evaluation that reached its tell is cached and in a complete trial.
    told = {d for p, d, pid in search_cli.traced("before_tell")}
    assert told <= {t.user_attrs["arch_hash"] for t in info["done"]}


def test_sqlite_lock_held_for_a_while_is_waited_for(tmp_path):
    db = f"{tmp_path}/s.db"
    held = threading.Event()

    def hold_lock(seconds):
        c = sqlite3.connect(db, isolation_level=None)
        c.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(seconds)
        c.execute("ROLLBACK")
        c.close()

    calls = []

    def evaluator(arch, config):
        calls.append(arch.arch_hash)
        if len(calls) == 1:  # another process writes for 3 s while this result is stored
            threading.Thread(target=hold_lock, args=(3.0,), daemon=True).start()
            held.wait(10)
        return evaluate(arch, config)

    res = run_search(_cfg(f"sqlite:///{db}"), evaluator=evaluator)
    assert res.evaluated == 3 and res.failed == 0


def test_sqlite_lock_beyond_the_timeout_is_one_error_naming_postgresql(tmp_path, monkeypatch):
    # where the connections read it (nasconv.storage re-exports the name; patching that copy
    # left the 60 s default in force, and this test took two minutes)
    monkeypatch.setattr(nasconv_storage.database, "SQLITE_TIMEOUT_S", 1)
    db = f"{tmp_path}/s.db"
    locks: list[sqlite3.Connection] = []

    def evaluator(arch, config):
        if not locks:  # from now on another process holds the database
            c = sqlite3.connect(db, isolation_level=None)
            c.execute("BEGIN EXCLUSIVE")
            locks.append(c)
        return evaluate(arch, config)

    with pytest.raises(StorageError, match="PostgreSQL") as err:
        run_search(_cfg(f"sqlite:///{db}"), evaluator=evaluator)
    assert "\n" not in str(err.value)
    locks[0].execute("ROLLBACK")
    locks[0].close()
    # The same process again: the trial that driver could not finish is failed and redone.
    res = run_search(_cfg(f"sqlite:///{db}"))
    assert res.evaluated == 3
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert all("died" in t.user_attrs["fail_reason"] for t in study.get_trials(states=(TrialState.FAIL,)))
