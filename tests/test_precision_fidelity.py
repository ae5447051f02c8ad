"""benchmarks/precision_fidelity.py: its rank statistics, and a quick run that resumes from its stored evaluations."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "precision_fidelity.py"


def _load_module():
    return load_benchmark("precision_fidelity")


def test_rank_statistics():
    pf = _load_module()
    assert list(pf.rankdata([3.0, 1.0, 2.0, 2.0])) == [4.0, 1.0, 2.5, 2.5]
    assert pf.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert pf.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(pf.spearman([1, 1, 1], [1, 2, 3]))
    assert pf.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # scipy's value
    lo, hi = pf.bootstrap_rho(list(range(12)), [x + (3 if x % 3 == 0 else 0) for x in range(12)], resamples=300)
    assert 0.5 < lo <= hi <= 1


def test_summary_of_pairs():
    pf = _load_module()
    pairs = [{"fp32": {"accuracy": a, "train_time_s": 10.0, "diverged": False},
              "bf16": {"accuracy": a + 0.01, "train_time_s": 5.0, "diverged": False}} for a in (0.5, 0.6, 0.7)]
    s = pf.summarize("resnet20", pairs)
    assert s["n"] == 3 and s["spearman_rho"] == pytest.approx(1.0) and s["speedup"] == 2.0
    assert s["mean_abs_accuracy_diff"] == pytest.approx(0.01) and s["goal_met"] and "rerun_rho" not in s
    for p, a in zip(pairs, (0.6, 0.5, 0.7)):  # a new fp32 seed swaps two of three
        p["fp32-seed+1"] = {"accuracy": a, "train_time_s": 10.0, "diverged": False}
    s = pf.summarize("resnet20", pairs)
    assert s["rerun_rho"] == pytest.approx(0.5) and s["bf16_within_seed_noise"]


@pytest.mark.slow
def test_quick_run_resumes_from_its_stored_evaluations(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(tmp_path)]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    lines = (tmp_path / "precision_fidelity-evals.jsonl").read_text().splitlines()
    evals = [json.loads(line) for line in lines]
    # interleaved: fp32 first for the first architecture, bf16 first for the second; the fp32
    # re-run (the next seed: the noise ceiling of rho) last
    assert [e["run"] for e in evals] == ["fp32", "bf16", "fp32-seed+1", "bf16", "fp32", "fp32-seed+1"]
    assert [e["precision"] for e in evals] == ["fp32", "bf16", "fp32", "bf16", "fp32", "fp32"]
    assert [e["seed"] for e in evals if e["run"] == "fp32-seed+1"] == [e["seed"] + 1 for e in evals
                                                                     if e["run"] == "fp32"]
    res = json.loads((tmp_path / "precision_fidelity.json").read_text())
    (s,) = res["summary"]
    assert s["space"] == "resnet20" and s["n"] == 2 and s["speedup"] > 0 and "native_bf16" in res["meta"]
    assert "rerun_rho" in s and "fp32 re-run" in (tmp_path / "precision_fidelity.md").read_text()
    md = (tmp_path / "precision_fidelity.md").read_text()
    assert res["meta"]["cpu"] in md and "native bf16" in md and "| resnet20 | 2 |" in md

    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "6 trainings reused" in again.stdout
    assert (tmp_path / "precision_fidelity-evals.jsonl").read_text().splitlines() == lines  # nothing trained again
    assert json.loads((tmp_path / "precision_fidelity.json").read_text())["summary"] == res["summary"]
