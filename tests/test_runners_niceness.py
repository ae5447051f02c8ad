"""A Ray worker runs at its driver's niceness, not Ray's 15 on top of it (issue #34: under `nice`
the evaluation worker ran at 19 and starved)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_DRIVER = r"""
import json, os, sys, time
os.nice(3)
from nasconv.runners import RayRunner

def niceness(arch, cfg):
    return {"nice": os.nice(0)}

runner = RayRunner(workers=1, cpus_per_worker=1)
try:
    runner.submit("k", niceness, {}, {})
    done = []
    deadline = time.monotonic() + 120
    while not done and time.monotonic() < deadline:
        done = runner.wait(1.0)
finally:
    runner.shutdown()
print(json.dumps({"driver": os.nice(0), "worker": done[0][1]["nice"] if done and done[0][1] else None,
                  "error": done[0][2] if done else "timed out"}))
"""


@pytest.mark.slow
def test_a_ray_worker_runs_at_the_drivers_niceness(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_worker_niceness"}
    (tmp_path / "driver.py").write_text(_DRIVER)
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py")], capture_output=True, text=True,
                          timeout=300, env=env, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] is None
    assert out["driver"] == os.nice(0) + 3
    assert out["worker"] == out["driver"]  # Ray's default would be min(19, driver + 15)
