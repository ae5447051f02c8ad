"""The uncertainty on every surface: what the intervals resolve (nasconv.results.noise), and a
search whose trials, ``pareto`` table, JSON and plot carry them."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest

from nasconv.evaluate import EvalConfig
from nasconv.results import fill_intervals, noise_line, resolution
from nasconv.results.plot import _bars
from nasconv.search import SearchConfig, run_search
from nasconv.stats import wilson_interval
from nasconv.train import TrainConfig


def _row(acc: float | None, lat: float, n: int = 2000, lat_half: float = 0.2, **kw) -> dict:
    r = {"accuracy": acc, "latency_ms": lat, "latency_ci_ms": [lat - lat_half, lat + lat_half], **kw}
    return fill_intervals(r, n) if acc is not None else r


def test_the_issues_front_is_reported_as_unresolved_from_the_baseline():
    # `make search`'s 3-member front: accuracies within about one SE of each other and of the
    # baseline (2,000 validation images), latencies well apart.
    front = [_row(0.7945, 10.0), _row(0.8000, 12.0), _row(0.8025, 15.0)]
    base = _row(0.8035, 30.0)
    res = resolution(front, base, ["accuracy", "latency"])
    assert res["accuracy"]["differ_from_baseline"] == 0 and res["accuracy"]["neighbour_pairs_resolved"] == 0
    assert res["latency"]["differ_from_baseline"] == 3 and res["latency"]["neighbour_pairs_resolved"] == 2
    line = noise_line(res)
    assert "accuracy: 0 of 3 front members differ from the baseline beyond noise (95%)" in line
    assert "the front is ordered by latency" in line and "its accuracy order is within noise" in line
    assert "\n" not in line


def test_differences_beyond_noise_are_counted():
    front = [_row(0.70, 10.0), _row(0.80, 10.1, lat_half=0.5)]
    res = resolution(front, _row(0.80, 20.0), ["accuracy", "latency"])
    assert res["accuracy"] == {"measured": True, "members": 2, "neighbour_pairs": 1, "neighbour_pairs_resolved": 1,
                               "differ_from_baseline": 1}
    assert res["latency"]["neighbour_pairs_resolved"] == 0  # 10.0 vs 10.1 with ±0.5: within noise
    assert "the front is ordered by accuracy" in noise_line(res)


def test_exact_objectives_and_zero_cost_scores():
    front = [{"accuracy": None, "score": 3.0, "macs": 10}, {"accuracy": None, "score": 4.0, "macs": 20}]
    res = resolution(front, None, ["accuracy", "macs"])
    assert res == {"accuracy": {"measured": False}}  # MACs are exact: nothing to resolve
    assert "no interval" in noise_line(res)


def test_results_stored_before_intervals_get_them_from_the_validation_size():
    row = fill_intervals({"accuracy": 0.8}, 2000)
    assert row["val_images"] == 2000 and row["accuracy_ci"] == list(wilson_interval(0.8, 2000))
    assert fill_intervals({"accuracy": 0.8, "accuracy_ci": [0.1, 0.9]}, 2000)["accuracy_ci"] == [0.1, 0.9]


def test_plot_error_bars_are_the_intervals():
    rows = [_row(0.8, 10.0, n=100)]
    below, above = _bars(rows, "accuracy")
    lo, hi = rows[0]["accuracy_ci"]
    assert below == [pytest.approx(0.8 - lo)] and above == [pytest.approx(hi - 0.8)]
    assert _bars(rows, "macs") is None


@pytest.mark.slow
def test_a_trained_search_carries_intervals_on_every_surface(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    ev = EvalConfig(data="synthetic", train=TrainConfig(train_images=128, val_images=200, batch_size=32,
                                                        resolution=16), latency_max_time_s=0.3)
    res = run_search(SearchConfig(space="resnet20", budget="30mflops", trials=3, sampler="random", storage=url,
                                  study_name="s", eval=ev, runner="inline", progress=False))
    assert set(res.noise) == {"accuracy", "latency"}
    for row in [*res.front, res.baseline]:
        lo, hi = row["accuracy_ci"]
        assert lo <= row["accuracy"] <= hi and row["val_images"] == 200
        lo, hi = row["latency_ci_ms"]
        assert lo <= row["latency_ms"] <= hi
    # the trial's user attributes, which optuna-dashboard shows on the trial's page
    study = optuna.load_study(study_name="s", storage=url)
    done = [t for t in study.trials if t.user_attrs.get("status") == "evaluated"]
    assert done and all({"accuracy_se", "accuracy_ci", "latency_ci_ms", "val_images"} <= set(t.user_attrs)
                        for t in done)
    cli = [sys.executable, "-m", "nasconv.cli", "pareto", "--study", "s", "--storage", url]
    data = json.loads(subprocess.run([*cli, "--json"], capture_output=True, text=True, check=True).stdout)
    assert data["noise"] == res.noise and data["front"][0]["accuracy_ci"] == res.front[0]["accuracy_ci"]
    table = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    assert "accuracy [95%]" in table and "latency ms [95%]" in table
    assert f"{res.baseline['accuracy']:.4f} [{res.baseline['accuracy_ci'][0]:.4f}, " in table
    assert "noise: accuracy:" in table and "front members differ from the baseline beyond noise" in table
