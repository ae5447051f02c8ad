"""benchmarks/data_pipeline.py in quick mode, on a small generated folder: it runs end to end,
and what it reports holds together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_mode_writes_a_consistent_report(tmp_path):
    for split, n in (("train", 6), ("test", 2)):
        for c, name in enumerate(("a", "b", "c")):
            for i in range(n):
                p = tmp_path / "f" / split / name / f"{i}.jpg"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (32, 32), (60 * c, 10 * i, 99)).save(p)
    out = subprocess.run([sys.executable, "benchmarks/data_pipeline.py", "--quick", "--procs", "1",
                          "--folder", str(tmp_path / "f"), "--out", str(tmp_path / "out")],
                         cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "data_pipeline.json").read_text())
    md = (tmp_path / "out" / "data_pipeline.md").read_text()
    assert res["quick"] and res["images"] == 24 and res["one_copy_bytes"] == 24 * 3 * 32 * 32
    assert res["checksums_agree"], "before and after loads saw different pixels"
    assert set(res["memory"]) == {"baselinex1", "beforex1", "afterx1"}
    for m in res["memory"].values():
        assert m["pss_kb"] > 0 and m["rss_kb"] >= m["pss_kb"] * 0.5
    assert res["cached_speedup"] == pytest.approx(res["median_load_s"]["before"] / res["median_load_s"]["cached"])
    assert "Cached load vs before" in md and "| before | 1 |" in md and res["cpu"] in md
