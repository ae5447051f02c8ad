"""The per-device latency lock: across real processes, no training step overlaps a timing, a
timing is not starved by a stream of steps, and a dead holder never leaves the device locked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from nasconv.device_lock import DeviceGate, device_key

_WORKER = textwrap.dedent("""
    import json, os, sys, time
    import torch
    from nasconv.device_lock import DeviceGate
    role, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    spans, waits = [], []
    gate = DeviceGate(torch.device("cpu"))
    print("ready", flush=True)
    while not os.path.exists(out + ".go"):  # all start together, however slowly each imported torch
        time.sleep(0.01)
    end = time.monotonic() + seconds
    if role == "train":
        while time.monotonic() < end:
            with gate.step():
                t0 = time.monotonic(); time.sleep(0.02); spans.append((t0, time.monotonic()))
    elif role == "hold":
        with gate.timing():
            print("holding", flush=True); time.sleep(3600)
    else:
        time.sleep(0.3)  # let the trainers get going
        while time.monotonic() < end:
            asked = time.monotonic()
            with gate.timing() as waited:
                t0 = time.monotonic(); time.sleep(0.2); spans.append((t0, time.monotonic()))
            waits.append(t0 - asked)
            time.sleep(0.1)
    json.dump({"spans": spans, "waits": waits, "isolated": gate.isolated}, open(out, "w"))
""")


def _start(role: str, seconds: float, out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, role, str(seconds), str(out)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def lock_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("NASCONV_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("NASCONV_LATENCY_LOCK", raising=False)
    return dict(os.environ)


def _step_in_thread(gate: DeviceGate) -> tuple[threading.Event, threading.Thread]:
    """A training step of ``gate`` on another thread; the event is set once the step got the device."""
    entered = threading.Event()

    def step() -> None:
        with gate.step():
            entered.set()

    t = threading.Thread(target=step, daemon=True)
    t.start()
    return entered, t


def _overlaps(a: list[list[float]], b: list[list[float]]) -> list[tuple[list[float], list[float]]]:
    return [(x, y) for x in a for y in b if x[0] < y[1] and y[0] < x[1]]


def test_timing_never_overlaps_steps_of_other_processes_and_is_not_starved(tmp_path: Path, lock_env):
    outs = {name: tmp_path / f"{name}.json" for name in ("train1", "train2", "time")}
    procs = [_start("train", 2.5, outs["train1"], lock_env), _start("train", 2.5, outs["train2"], lock_env),
             _start("time", 2.0, outs["time"], lock_env)]
    for path in outs.values():
        Path(f"{path}.go").touch()
    for p in procs:
        assert p.wait(timeout=60) == 0
    res = {name: json.loads(path.read_text()) for name, path in outs.items()}
    timing = res["time"]["spans"]
    steps = res["train1"]["spans"] + res["train2"]["spans"]
    assert all(r["isolated"] for r in res.values())
    assert len(timing) >= 3 and len(steps) >= 20
    assert _overlaps(timing, steps) == []
    # Two trainers step back to back; a measurement still gets in within about a step.
    assert max(res["time"]["waits"]) < 1.0, res["time"]["waits"]
    # And the trainers did step while no measurement ran (the lock is shared among them).
    assert _overlaps(res["train1"]["spans"], res["train2"]["spans"])


def test_a_killed_holder_releases_the_device(tmp_path: Path, lock_env):
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, "hold", "0", str(tmp_path / "x.json")], env=lock_env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    (tmp_path / "x.json.go").touch()
    assert proc.stdout.readline().strip() == "holding"
    with DeviceGate(torch.device("cpu")) as gate:
        entered, t = _step_in_thread(gate)
        assert not entered.wait(0.5)  # blocked while the holder lives
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert entered.wait(10)
        t.join(10)


def test_off_switch_and_unusable_lock_dir_run_unlocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NASCONV_LOCK_DIR", str(blocker / "locks"))
    gate = DeviceGate(torch.device("cpu"))
    assert not gate.isolated
    with gate.step(), gate.timing() as waited:  # no lock: nothing blocks, not even each other
        assert waited == 0.0
    gate.close()

    monkeypatch.setenv("NASCONV_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NASCONV_LATENCY_LOCK", "0")
    assert not DeviceGate(torch.device("cpu")).isolated
    assert not (tmp_path / "locks").exists()


def test_two_gates_in_one_process_exclude_each_other(tmp_path: Path, lock_env):
    a, b = DeviceGate(torch.device("cpu")), DeviceGate(torch.device("cpu"))
    try:
        with a.timing():
            entered, t = _step_in_thread(b)
            assert not entered.wait(0.3)
        assert entered.wait(5)
        t.join(5)
        start = time.monotonic()
        with a.step(), b.step():  # steps share the device (exclusive ones would never get in)
            pass
        assert time.monotonic() - start < 30.0  # a hang guard: two lock calls, not a speed
    finally:
        a.close()
        b.close()


def test_device_key_names_the_cpu_and_is_file_safe():
    assert device_key(torch.device("cpu")) == "cpu"
