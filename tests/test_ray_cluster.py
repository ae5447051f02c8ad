"""The search on a real two-node Ray cluster on this machine (`ray start --head` on loopback and
a second node with `ray start --address`), driven by `nasconv search --address`: evaluations
land on both nodes, and the search finishes when one node dies mid-search.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


def test_search_on_two_nodes_survives_losing_one(ray_cluster, search_cli, tmp_path):
    storage, trials = f"sqlite:///{tmp_path}/s.db", 8
    search_cli.trace = ray_cluster.trace  # the workers trace where the nodes' environment says
    # Evaluations of about 2 s (naswot at 64 px), so that both nodes' CPUs are busy at once.
    cmd = [a for a in search_cli.cmd(storage, trials, slow=True) if a != "--inline"]
    cmd += ["--address", ray_cluster.address, "--workers", "2", "--cpus-per-worker", "1"]
    env = {**search_cli.env(), "RAY_AUTH_MODE": "disabled", "NASCONV_TEST_TRACE": str(ray_cluster.trace)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def on_worker_node(pid: int) -> bool:
        return ray_cluster.worker.owns(pid)

    # Wait for an evaluation on the second node to complete, then for the next one there to
    # begin, and kill that node (every process of it) in the middle of that evaluation.
    t0, seen_done, killed = time.monotonic(), 0, False
    while not killed:
        if proc.poll() is not None:
            pytest.fail(f"the search ended before the node was killed: rc {proc.returncode}, "
                        f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > 240:
            proc.kill()
            pytest.fail("no evaluation on the second node")
        done_there = [d for p, d, pid in search_cli.traced("during_eval") if on_worker_node(pid)]
        if not seen_done:
            try:  # (the driver may not have created the study yet)
                pids = {t.user_attrs.get("worker_pid")
                        for t in search_cli.study(storage).get_trials(states=(TrialState.COMPLETE,))}
            except Exception:
                pids = set()
            if any(p and on_worker_node(p) for p in pids):
                seen_done = len(done_there)
        elif len(done_there) > seen_done:
            victim = done_there[-1]  # the architecture being evaluated there now
            ray_cluster.worker.kill()
            killed = True
        time.sleep(0.1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]

    study = search_cli.study(storage)
    done = [t for t in study.trials if t.user_attrs.get("status") in ("evaluated", "cached")
            and t.state == TrialState.COMPLETE]
    assert len(done) == trials
    evaluated = [t for t in done if t.user_attrs["status"] == "evaluated"]
    assert len({t.user_attrs["ray_node_id"] for t in evaluated}) == 2, "evaluations ran on both nodes"
    assert not study.get_trials(states=(TrialState.RUNNING,))
    # The evaluation cut short by the node's death was retried on the head, or failed with its reason.
    cut = [t for t in study.trials if t.user_attrs.get("arch_hash") == victim][0]
    assert cut.state == TrialState.COMPLETE or (cut.state == TrialState.FAIL and cut.user_attrs["fail_reason"])
    runs = len([d for p, d, pid in search_cli.traced("during_eval") if d == victim])
    print(f"cut evaluation: trial {cut.number} {cut.state.name} {cut.user_attrs.get('fail_reason', '')} "
          f"(evaluation started {runs} times)")
    for t in study.get_trials(states=(TrialState.FAIL,)):
        assert t.user_attrs.get("fail_reason")
