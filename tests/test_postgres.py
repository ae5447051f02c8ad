"""The search on a real PostgreSQL server (127.0.0.1:5432, database ``test``, trust auth): two
drivers on one study at once, a driver killed and run again, concurrent recovery; `pareto` and
`export` reading the study. Each test gets a database of its own (see conftest.postgres_url);
without a server these tests skip, unless NASCONV_REQUIRE_SERVICES is set (CI), where they fail.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading

import pytest
from optuna.trial import TrialState

from nasconv.cli import main
from nasconv.evaluate import EvalConfig
from nasconv.search import SearchConfig, SearchDriver, suggest_arch
from nasconv.train import TrainConfig

pytestmark = pytest.mark.slow


def test_two_drivers_on_one_study(postgres_url, search_cli, tmp_path, capsys):
    trials = 6
    # 1 s per evaluation, so that the first driver cannot finish the study alone before the
    # second one has joined, however fast the machine is
    env = search_cli.env(NASCONV_TEST_DELAY="during_eval:1")
    first = search_cli.start(postgres_url, trials, env=env)
    search_cli.wait_traced("after_ask", 1, first)  # the second driver joins a running search
    second = search_cli.start(postgres_url, trials, env=env)
    for p in (first, second):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    info = search_cli.check(postgres_url, trials, drivers=2)
    drivers = {t.user_attrs["driver"] for t in info["done"]}
    assert len(drivers) == 2, "both drivers completed trials"

    # The study reads back through the commands.
    assert main(["pareto", "--study", "s", "--storage", postgres_url, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluated"] == len(info["done"]) and summary["running"] == 0
    assert [f["trial"] for f in summary["front"]] == info["front"]
    out = tmp_path / "export"
    assert main(["export", "--study", "s", "--storage", postgres_url, "--pareto", "--out", str(out), "--json"]) == 0
    assert len(list(out.glob("*.json"))) == len(info["front"])


def test_sigkill_then_rerun_on_postgres(postgres_url, search_cli):
    crashed = search_cli.run(postgres_url, 3, env=search_cli.env(NASCONV_TEST_CRASH_AT="before_tell:2"))
    assert crashed.returncode == -signal.SIGKILL
    assert search_cli.run(postgres_url, 3).returncode == 0
    info = search_cli.check(postgres_url, 3)
    failed = info["study"].get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and "died" in failed[0].user_attrs["fail_reason"]
    again = [t for t in info["done"] if t.params == failed[0].params]
    assert [t.user_attrs["status"] for t in again] == ["cached"]  # from the cache, not evaluated again


def test_concurrent_recovery_fails_and_requeues_once(postgres_url):
    cfg = SearchConfig(space="resnet20", budget="30mflops", trials=2, sampler="random", storage=postgres_url,
                       study_name="r", objectives=("accuracy", "macs"), runner="inline", evaluate_baseline=False,
                       progress=False, eval=EvalConfig(data="synthetic", proxy="synflow", latency=False,
                                                       train=TrainConfig(resolution=16)))
    drivers = [SearchDriver(cfg) for _ in range(4)]
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphans = []
    for _ in range(3):  # trials of a driver of this host that died
        t = drivers[0].study.ask()
        suggest_arch(t, drivers[0].space)
        t.set_user_attr("driver", f"{socket.gethostname()}:{dead.pid}:dddd")
        orphans.append(t.number)
    counts = []
    start = threading.Barrier(len(drivers))

    def recover(d):
        start.wait()
        counts.append(d.recover())

    threads = [threading.Thread(target=recover, args=(d,)) for d in drivers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert sum(counts) == 3  # each orphan failed by exactly one driver
    study = drivers[0].study
    assert [t.number for t in study.get_trials(states=(TrialState.FAIL,))] == orphans
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 3  # and queued once
    for d in drivers:
        d.tables.dispose()
        d.storage.engine.dispose()
