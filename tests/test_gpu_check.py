"""benchmarks/gpu_check.py: its dry run (CPU, tiny sizes, synthetic data) writes complete, finite results."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _load_module():
    return load_benchmark("gpu_check")


def _numbers(obj, path="$"):
    """Every number in a JSON document, with its path; non-finite floats were written as strings."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, str) and obj in ("nan", "inf", "-inf"):
        yield path, float(obj)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def test_busy_union_merges_and_clips():
    gc = _load_module()
    assert gc.busy_union([], 0, 10) == 0
    assert gc.busy_union([(0, 2), (1, 3), (5, 6)], 0, 10) == 4  # [0, 3] and [5, 6]
    assert gc.busy_union([(-5, 1), (9, 20)], 0, 10) == 2  # clipped to [0, 1] and [9, 10]
    assert gc.busy_union([(2, 3)], 4, 10) == 0


@pytest.mark.slow
def test_dry_run_writes_complete_finite_results(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "gpu_check.json").read_text())
    md = (out / "gpu_check.md").read_text()

    assert res["errors"] == {}
    meta = res["meta"]
    assert meta["dry_run"] is True and meta["device"] == "cpu"
    for key in ("device_name", "torch", "cuda", "cudnn", "python", "part_times_s", "run_time_s"):
        assert key in meta
    assert set(meta["part_times_s"]) == {"ops_check", "op_bench", "baseline", "search"}

    ops = res["ops_check"]
    assert ops["summary"]["cases"] == len(ops["rows"]) >= 4
    for row in ops["rows"]:
        assert "error" not in row, row
        # on the CPU the "device" is the CPU: the copy must agree exactly, every check pass
        assert row["fp32_ok"] and row["bf16_ok"] and row["macs_ok"] and row["params_ok"], row
        assert row["max_abs_diff"] == 0.0

    bl = res["baseline"]
    assert 0.0 <= bl["accuracy"] <= 1.0 and bl["accuracy_ci"][0] <= bl["accuracy"] <= bl["accuracy_ci"][1]
    assert bl["steps"] > 0 and bl["train_time_s"] > 0
    assert set(bl["latency"]) == {"1", "2"}
    for lat in bl["latency"].values():
        assert 0 < lat["ci95_ms"][0] <= lat["median_ms"] <= lat["ci95_ms"][1] and lat["iqr_ms"] >= 0

    se = res["search"]
    assert se["evaluated"] == 2 and se["failed"] == 0 and len(se["candidates"]) == 2
    assert se["candidates_per_min"] > 0 and se["step_ms_unprofiled"]["median"] > 0
    assert len(se["profiled"]) == 2  # both candidates (at most PROFILE_CANDIDATES)
    for p in se["profiled"]:
        assert "error" not in p, p
        assert p["steps_profiled"] >= 1 and p["busy_ms_per_step"] == 0.0  # no GPU: nothing busy
        assert p["idle_share"] is None  # and no idle share claimed on a CPU

    ob = res["op_bench"]
    ops_timed = {(r["op"], r["form"]) for r in ob["rows"]}
    assert {("gc", "module"), ("tbc", "fold"), ("tbc", "tiled"), ("tgc", "fold"), ("tgc", "tiled")} <= ops_timed
    for r in ob["rows"]:
        assert r["median"] > 0 and r["ci95"][0] <= r["median"] <= r["ci95"][1] and r["iqr"] >= 0
    assert all(c["allclose"] for c in ob["checks"]) and ob["checks"]
    assert len(ob["experts"]) == 3 and all(e["allclose"] and e["speedup"] > 0 for e in ob["experts"])
    assert ob["findings"]["eager"]["cells"] == 2 and ob["findings"]["eager"]["experts"]["cells"] == 3
    assert ob["findings"]["graph"] is None  # CUDA graphs: on a GPU only

    bad = [(p, v) for p, v in _numbers(res) if not math.isfinite(v)]
    assert not bad, bad
    for heading in ("## 1. Every operator", "## 2. `nasconv.evaluate`", "## 3. Inline search",
                    "## 4. Operator timings"):
        assert heading in md
    assert "not run" not in md

    # --render rewrites both files from the JSON alone (findings recomputed), notes shown on top
    notes = tmp_path / "notes.md"
    notes.write_text("a note written after the run")
    again = tmp_path / "again"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--render", str(out / "gpu_check.json"), "--notes-file",
                           str(notes), "--out", str(again)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res2 = json.loads((again / "gpu_check.json").read_text())
    assert res2["op_bench"]["findings"] == res["op_bench"]["findings"]
    assert res2["meta"]["notes_after_run"] == "a note written after the run"
    md2 = (again / "gpu_check.md").read_text()
    assert "a note written after the run" in md2
    assert md2.replace(md2[md2.index("## Notes"):md2.index("## 1.")], "") == md  # the rest is unchanged
