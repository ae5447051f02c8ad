"""``search --time``: no new candidate nor promotion after the deadline; what runs finishes within
the grace period, else is failed and queued again as Ctrl-C does; the same command continues.

Time is a fake clock the test moves (on the search's own events, or inside an evaluation), so
that what is asserted is what the driver decides, never how fast this machine is."""

from __future__ import annotations

import os
import time

import optuna
import pytest
from optuna.trial import TrialState

from nasconv.cli import main
from nasconv.errors import UsageError
from nasconv.evaluate import EvalConfig, evaluate
from nasconv.search import SearchConfig, run_search
from nasconv.search.deadline import (
    GRACE_MIN_S,
    Deadline,
    OutOfTime,
    format_duration,
    grace_for,
    parse_duration,
)
from nasconv.storage import NasconvTables
from nasconv.train import TrainConfig

ZC = EvalConfig(proxy="synflow", train=TrainConfig(resolution=16), zc_batch=8, latency=False)
TINY = EvalConfig(data="synthetic", train=TrainConfig(train_images=40, val_images=40, batch_size=20, resolution=16),
                  latency=False)


class EventClock:
    """Time moves by ``step`` seconds at each evaluation the driver reports done (a search
    callback); after ``free_after`` seconds it also moves by ``tick`` at every reading."""

    def __init__(self, step: float = 100.0, tick: float = 0.0, free_after: float = float("inf")) -> None:
        self.t, self.step, self.tick, self.free_after = 0.0, step, tick, free_after
        self.events: list[tuple[str, float]] = []

    def __call__(self, *event: object) -> float:
        if event:  # as a search callback: (event, status)
            self.events.append((str(event[0]), self.t))
            if event[0] in ("done", "error", "promoted"):
                self.t += self.step
            return self.t
        if self.t >= self.free_after:
            self.t += self.tick
        return self.t

    def close(self) -> None:
        pass


def _cfg(storage: str, **kw) -> SearchConfig:
    base = dict(space="resnet20", budget="30mflops", trials=8, sampler="random", seed=0, storage=storage,
                study_name="t", eval=ZC, runner="inline", evaluate_baseline=False, progress=False,
                objectives=("accuracy", "macs"))
    base.update(kw)
    return SearchConfig(**base)


def _study(storage: str) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="t", storage=storage)


def _evaluated(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(states=(TrialState.COMPLETE,))
            if t.user_attrs.get("status") in ("evaluated", "cached")]


# --- the duration and the deadline -----------------------------------------------------------
@pytest.mark.parametrize("text,seconds", [("10m", 600), ("2h", 7200), ("90s", 90), ("1h30m", 5400),
                                          ("1.5h", 5400), ("1d", 86400), (" 2H ", 7200), ("365d", 365 * 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "0m", "-5m", "abc", "10", "m", "5 minutes", "366d", "1h-5m", "", "1e3s",
                                  "99999999h"])
def test_bad_durations_are_usage_errors(text):
    with pytest.raises(UsageError, match="--time"):
        parse_duration(text)


def test_grace_and_deadline_follow_the_clock():
    assert grace_for(60) == GRACE_MIN_S and grace_for(7200) == 720
    assert format_duration(5400) == "1h30m" and format_duration(90) == "1m30s" and format_duration(600) == "10m"
    now = [10.0]
    d = Deadline(600, clock=lambda: now[0])
    assert not d.passed() and not d.grace_over()
    now[0] = 609.9
    assert not d.passed()
    now[0] = 610
    assert d.passed() and not d.grace_over()
    d.check(running=3)  # within the grace: nothing raised
    now[0] = 670
    assert d.grace_over()
    d.check(running=0)  # nothing running: nothing to stop
    with pytest.raises(OutOfTime):
        d.check(running=1)
    assert not Deadline(None, clock=lambda: 1e12).passed()


@pytest.mark.parametrize("value", ["0", "-5m", "abc", "400d"])
def test_cli_bad_time_is_one_line_exit_2(value, capsys, tmp_path):
    code = main(["search", "--space", "resnet20", "--time", value, "--storage", f"sqlite:///{tmp_path}/x.db"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--time" in err and "Traceback" not in err
    assert not (tmp_path / "x.db").exists()


def test_config_refuses_bad_budgets():
    with pytest.raises(UsageError):
        _cfg("sqlite://", time_s=0)
    with pytest.raises(UsageError):
        _cfg("sqlite://", time_s=400 * 86400)


# --- inline, flat ----------------------------------------------------------------------------
def _flat_stops_between_candidates(storage: str) -> None:
    clock = EventClock(step=100)
    res = run_search(_cfg(storage, time_s=250), clock=clock, callbacks=[clock])
    # done at 100, 200 (< 250: the next starts), 300: past the deadline, nothing new
    assert res.stopped_on_time and res.evaluated == 3 and res.requeued == 0 and res.time_s == 250
    study = _study(storage)
    assert len(_evaluated(study)) == 3 and not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    # the same command continues, its own budget counted afresh; --trials first this time
    clock2 = EventClock(step=100)
    res2 = run_search(_cfg(storage, time_s=10_000, trials=5), clock=clock2, callbacks=[clock2])
    assert res2.evaluated == 5 and not res2.stopped_on_time


def test_inline_stops_between_candidates_sqlite(tmp_path):
    _flat_stops_between_candidates(f"sqlite:///{tmp_path}/s.db")


def _inline_overrun(storage: str) -> None:
    """The third evaluation is still running when the grace period ends: the watchdog interrupts
    it as Ctrl-C would; it is failed and its parameters queued, and the next run evaluates them."""
    clock = EventClock(step=100)
    calls: list[str] = []

    def evaluator(arch, config):
        calls.append(arch.arch_hash)
        if len(calls) == 3:
            clock.t = 250 + GRACE_MIN_S  # the deadline (250 s) and its grace pass during this one
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30:  # "trains" until the watchdog stops it
                time.sleep(0.02)
            raise AssertionError("the watchdog did not stop the evaluation")
        return evaluate(arch, config)

    res = run_search(_cfg(storage, time_s=250), clock=clock, callbacks=[clock], evaluator=evaluator)
    assert res.stopped_on_time and res.evaluated == 2 and res.requeued == 1 and not res.interrupted
    study = _study(storage)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and "--time deadline" in failed[0].user_attrs["fail_reason"]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [failed[0].params]
    res2 = run_search(_cfg(storage, trials=3))
    assert res2.evaluated == 3
    study = _study(storage)
    assert any(t.params == failed[0].params for t in _evaluated(study))
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_inline_overrun_is_requeued_sqlite(tmp_path):
    _inline_overrun(f"sqlite:///{tmp_path}/s.db")


def test_inline_overrun_is_stopped_with_sigint_ignored(tmp_path):
    """Under nohup, or in a background job of a shell without job control, SIGINT is ignored and
    Python's interrupt_main does nothing: the watchdog still stops the evaluation."""
    import signal

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _inline_overrun(f"sqlite:///{tmp_path}/s.db")
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.slow
def test_inline_overrun_is_requeued_postgres(postgres_url):
    _inline_overrun(postgres_url)


def test_cli_says_it_stopped_on_time(tmp_path, capsys, monkeypatch):
    """The summary line, through the command (the budget passes before the first candidate)."""
    import nasconv.search.driver as driver

    monkeypatch.setattr(driver, "Deadline", lambda budget_s, grace_s, clock=None: Deadline(
        budget_s, grace_s, clock=iter(range(0, 10**9, 10**6)).__next__))
    code = main(["search", "--space", "resnet20", "--budget", "30mflops", "--proxy", "synflow", "--inline",
                 "--no-baseline", "--trials", "5", "--time", "10m", "--storage", f"sqlite:///{tmp_path}/c.db",
                 "--study", "t", "--resolution", "16", "--no-latency", "--objectives", "accuracy,macs"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "stopped on time: the --time budget (10m) ran out with 0 of 5 evaluated" in out


# --- rungs: a deadline between a rung result and its promotion loses nothing ------------------
def test_deadline_between_rung_result_and_promotion_loses_nothing(tmp_path):
    storage = f"sqlite:///{tmp_path}/mf.db"
    kw = dict(eval=TINY, rungs=2, eta=2, seed=1)
    clock = EventClock(step=100)
    started: list[tuple[int, float]] = []

    def evaluator(arch, config):
        started.append((config.train.train_images, clock.t))
        return evaluate(arch, config)

    res = run_search(_cfg(storage, trials=4, time_s=150, **kw), clock=clock, callbacks=[clock], evaluator=evaluator)
    # rung 0 results at 0 and 100 (the second makes a promotion due, at 200: past the deadline)
    assert res.stopped_on_time and res.evaluated == 2 and res.requeued == 0
    assert all(t < 150 for _, t in started), started
    assert [n for n, _ in started] == [40, 40], "no promotion started after the deadline"
    tables = NasconvTables(storage)
    try:
        assert tables.rung_results("t") == [] and tables.rung_claims("t") == []
    finally:
        tables.dispose()
    # continued without a budget: its first evaluation is the promotion that was due, the one an
    # uninterrupted run makes third
    def recording(seen):
        def evaluator(arch, config):
            seen.append((config.train.train_images, arch.arch_hash))
            return evaluate(arch, config)
        return evaluator

    resumed: list = []
    ref: list = []
    res2 = run_search(_cfg(storage, trials=4, **kw), evaluator=recording(resumed))
    res_ref = run_search(_cfg(f"sqlite:///{tmp_path}/ref.db", trials=4, **kw), evaluator=recording(ref))
    assert res2.evaluated == res_ref.evaluated == 4
    assert ref[2][0] == 80 and resumed[0] == ref[2]
    assert [n for n, _ in ref[:2]] == [40, 40]
    assert res2.promoted >= 1


# --- Ray ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ray_finishes_within_grace_then_stops(tmp_path):
    """Two workers: past the deadline nothing is asked; the evaluation still running finishes."""
    storage = f"sqlite:///{tmp_path}/ray.db"
    clock = EventClock(step=100)
    res = run_search(_cfg(storage, time_s=250, runner="ray", workers=2, cpus_per_worker=1), clock=clock,
                     callbacks=[clock])
    # asked: 2 at the start, one after each of the first two results (before 250 s); none after
    assert res.stopped_on_time and res.evaluated == 4 and res.requeued == 0
    assert not _study(storage).get_trials(states=(TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL))


@pytest.mark.slow
def test_ray_overrun_is_failed_and_requeued_postgres(postgres_url, tmp_path):
    """The evaluations asked after the first result run past the grace: cancelled, failed with
    the deadline as reason, their parameters queued again; the next run evaluates them."""
    marks = tmp_path / "calls"
    marks.mkdir()

    def evaluator(arch, config):
        n = len(os.listdir(marks))
        (marks / f"{n}-{os.getpid()}-{arch.arch_hash}").touch()
        if n >= 2:
            time.sleep(120)
        return evaluate(arch, config)

    clock = EventClock(step=60, tick=5, free_after=120)
    res = run_search(_cfg(postgres_url, time_s=150, runner="ray", workers=2, cpus_per_worker=1), clock=clock,
                     callbacks=[clock], evaluator=evaluator)
    assert res.stopped_on_time and res.evaluated == 2 and res.requeued == 2
    study = _study(postgres_url)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 2 and all("--time deadline" in t.user_attrs["fail_reason"] for t in failed)
    queued = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(TrialState.WAITING,))]
    assert sorted(map(str, queued)) == sorted(map(str, (t.params for t in failed)))
    res2 = run_search(_cfg(postgres_url, trials=4, runner="inline"))
    assert res2.evaluated == 4 and not _study(postgres_url).get_trials(states=(TrialState.WAITING,))
