"""benchmarks/bf16_budget.py: its summary (intervals, fitting fp32's time, reaching the target)."""

from __future__ import annotations

import pytest

from tests.conftest import load_benchmark


def _run(prec: str, n: int, acc: float, t: float) -> dict:
    return {"precision": prec, "train_images": n, "accuracy": acc, "val_images": 2000, "train_time_s": t}


def test_summary_of_settings():
    bb = load_benchmark("bf16_budget")
    runs = [_run("fp32", 8000, a, t) for a, t in ((0.80, 20.0), (0.81, 21.0), (0.79, 22.0))]
    runs += [_run("bf16", 8000, a, t) for a, t in ((0.80, 12.0), (0.80, 13.0), (0.81, 11.0))]
    runs += [_run("bf16", 16000, a, t) for a, t in ((0.845, 24.0), (0.850, 23.0), (0.848, 25.0))]
    fp32, bf8, bf16 = bb.summarize(runs, [8000, 16000])
    assert (fp32["precision"], fp32["train_images"], fp32["repeats"]) == ("fp32", 8000, 3)
    assert fp32["accuracy"] == pytest.approx(0.80) and fp32["time_s"] == 21.0
    lo, hi = fp32["accuracy_ci95"]
    assert lo < 0.80 < hi and hi - lo == pytest.approx(2 * 4.303 * 0.01 / 3 ** 0.5, rel=1e-3)  # t-interval, 2 df
    assert not fp32["slower_than_fp32"] and not bf8["slower_than_fp32"] and bf16["slower_than_fp32"]
    assert bf8["faster_than_fp32"] and not bf16["faster_than_fp32"] and not fp32["faster_than_fp32"]
    assert bf16["reaches_target"] and not fp32["reaches_target"] and not fp32["target_in_interval"]
    one = bb.summarize([_run("fp32", 8000, 0.83, 20.0)], [8000])[0]  # one repeat: its Wilson interval
    assert one["accuracy_ci95"][0] < 0.83 < one["accuracy_ci95"][1] and one["target_in_interval"]
    assert "| bf16 | 16,000 | 3 |" in bb.markdown({**_META}, [fp32, bf8, bf16])


_META = {"command": "c", "date": "d", "run_time_s": 1.0, "cpu": "x", "cpu_count": 2, "native_bf16": True,
         "torch": "t", "python": "p", "threads": 2, "git": "g", "data": "fashion-mnist", "load_before": "0",
         "load_after": "0", "other_cpu": "0.00", "space": "resnet50", "proxy": "max_depth 1", "repeats": 3}
