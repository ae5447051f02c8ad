"""A search stopped by SIGTERM (a batch scheduler, ``kill``, Ray) or SIGHUP (a closed terminal)
stops as Ctrl-C does: no new trials, the one in flight failed and queued again (or, held inside
a storage write, finished first), the database consistent, one line on stderr, exit code 128 +
the signal number; the same command then completes the study. Also: Ctrl-C while torch is still
loading ends in that one line, not a traceback.

The signal is placed with the trace hook of nasconv.faults.fault_point (NASCONV_TEST_TRACE) and
widened with its delay (NASCONV_TEST_DELAY), as in test_faults.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

AGAIN = "run the same command to continue"
#: the same command again, without the 2 s delay per evaluation (not a setting of the study)
NO_DELAY = {"NASCONV_TEST_DELAY": "nowhere:0"}


def _default_signals() -> None:
    # As from a terminal: a test run started with `nohup` or `&` would pass SIGHUP / SIGINT on
    # ignored, and nasconv leaves an ignored signal ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _start(search_cli, storage: str, trials: int, *, ray: bool = False, slow: bool = True,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(env or search_cli.env())
    if slow:
        env.setdefault("NASCONV_TEST_DELAY", "during_eval:2")
    cmd = search_cli.cmd(storage, trials, slow=slow)
    if ray:
        cmd = [a for a in cmd if a != "--inline"] + ["--workers", "1", "--cpus-per-worker", "1"]
    return subprocess.Popen(cmd, cwd=search_cli.tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_signals)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"nasconv search did not stop in {timeout} s; stderr: {err[-2000:]}")


def _children(pid: int) -> set[int]:
    """The processes this one started (Ray's), from /proc."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _stopped_cleanly(search_cli, storage: str, name: str) -> list:
    """The study once the driver stopped: nothing RUNNING, the trial in flight failed with the
    signal's name and its parameters queued again. Returns the failed trials."""
    study = search_cli.study(storage)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.user_attrs["fail_reason"] for t in failed] == [f"interrupted ({name})"]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [failed[0].params]
    return failed


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_signal_mid_evaluation_stops_like_ctrl_c_then_rerun_completes(search_cli, tmp_path, signum):
    storage, trials, name = f"sqlite:///{tmp_path}/s.db", 2, signal.Signals(signum).name
    proc = _start(search_cli, storage, trials)
    search_cli.wait_traced("during_eval", 1, proc)  # the first evaluation (2 s) has begun
    proc.send_signal(signum)
    out, err = _finish(proc)
    assert proc.returncode == 128 + signum
    assert err.strip().splitlines() == [
        f"nasconv: interrupted by {name}: 1 in-flight trial(s) failed and queued again; {AGAIN}"]
    assert out == ""  # --json: no result, and nothing else on stdout
    failed = _stopped_cleanly(search_cli, storage, name)

    again = search_cli.run(storage, trials, slow=True, env=search_cli.env(**NO_DELAY))
    assert again.returncode == 0, again.stderr
    info = search_cli.check(storage, trials)
    assert failed[0].params in [t.params for t in info["done"]]


def test_sigterm_while_a_trial_is_told_finishes_the_tell_first(search_cli, tmp_path):
    storage, trials = f"sqlite:///{tmp_path}/s.db", 3
    proc = _start(search_cli, storage, trials, slow=False,
                  env=search_cli.env(NASCONV_TEST_DELAY="after_tell:2"))
    search_cli.wait_traced("after_tell", 1, proc)  # told, its snapshot not yet written
    proc.send_signal(signal.SIGTERM)
    out, err = _finish(proc)
    assert proc.returncode == 143
    assert err.strip().splitlines() == [f"nasconv: interrupted by SIGTERM: {AGAIN}"]

    study = search_cli.study(storage)
    told = int(search_cli.traced("after_tell")[0][1])
    assert study.trials[told].state == TrialState.COMPLETE
    assert study.trials[told].user_attrs["status"] == "evaluated"
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert not study.get_trials(states=(TrialState.FAIL,))
    assert len(search_cli.traced("after_ask")) == told + 1  # no trial asked after the signal

    again = search_cli.run(storage, trials)
    assert again.returncode == 0, again.stderr
    search_cli.check(storage, trials)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_while_torch_loads_is_one_line(search_cli, tmp_path, signum):
    proc = _start(search_cli, f"sqlite:///{tmp_path}/s.db", 3, slow=False)
    time.sleep(0.3)  # `import nasconv.cli` is done; torch (over a second) is loading
    proc.send_signal(signum)
    out, err = _finish(proc)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    line = "nasconv: interrupted" if signum == signal.SIGINT else "nasconv: interrupted by SIGTERM"
    assert err.strip().splitlines() == [line]
    assert not search_cli.traced("after_ask")


def test_import_of_the_cli_loads_no_torch():
    code = "import sys, nasconv, nasconv.cli; print(sorted({'torch', 'optuna', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_sigterm_on_ray_stops_cleanly_without_a_crash_report(search_cli, tmp_path):
    storage, trials = f"sqlite:///{tmp_path}/s.db", 2
    proc = _start(search_cli, storage, trials, ray=True)
    search_cli.wait_traced("during_eval", 1, proc)
    ray_processes = _children(proc.pid)
    assert ray_processes  # Ray's local instance: GCS, raylet, ...
    proc.send_signal(signal.SIGTERM)
    out, err = _finish(proc)
    assert proc.returncode == 143, err
    # Not Ray's own: "*** SIGTERM received at time=..." and a native stack trace, then SIGABRT.
    assert "SIGTERM received" not in out + err and "logging.cc" not in err and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"nasconv: interrupted by SIGTERM: 1 in-flight trial(s) failed and queued again; {AGAIN}"]
    if out.strip():
        json.loads(out)
    deadline = time.monotonic() + 30  # RayRunner.shutdown ran: what Ray started ends
    while any(_alive(p) for p in ray_processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in ray_processes if _alive(p)]
    _stopped_cleanly(search_cli, storage, "SIGTERM")

    # resumed inline (resuming on Ray is test_faults' and test_search_multifidelity's): a study
    # stopped on Ray resumes in any runner
    again = _start(search_cli, storage, trials, env=search_cli.env(**NO_DELAY))
    _, err = _finish(again, timeout=300)
    assert again.returncode == 0, err
    search_cli.check(storage, trials)
