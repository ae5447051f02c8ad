"""The uncertainty on every surface: what the intervals resolve (nasconv.results.noise), and a
search whose trials, ``pareto`` table, JSON and plot carry them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
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
    # baseline (2,000 validation images), latencies well apart and timed together at the end.
    front = [_row(0.7945, 10.0, arch_hash="a"), _row(0.8000, 12.0, arch_hash="b"), _row(0.8025, 15.0, arch_hash="c")]
    base = _row(0.8035, 30.0, arch_hash="base")
    res = resolution(front, base, ["accuracy", "latency"], _paired({"a": 10, "b": 12, "c": 15, "base": 30}))
    assert res["accuracy"]["differ_from_baseline"] == 0 and res["accuracy"]["neighbour_pairs_resolved"] == 0
    assert res["latency"]["differ_from_baseline"] == 3 and res["latency"]["neighbour_pairs_resolved"] == 2
    line = noise_line(res)
    assert "accuracy: 0 of 3 front members differ from the baseline beyond noise (95%)" in line
    assert "the front is ordered by latency" in line and "its accuracy order is within noise" in line
    assert "latency (timed together, interleaved, 31 rounds at the end of the search; paired ratios): 3 of 3" in line
    assert "\n" not in line


def _paired(ms: dict[str, float], rounds: int = 31, drift=lambda k: 1.0 + 0.5 * (k % 7) / 6, noise: float = 0.01,
            seed: int = 0) -> dict:
    """A stored paired timing: each network ``ms`` in each round, times the machine's speed in that
    round (``drift``: here up to 1.5x, round to round), with 1% noise of its own."""
    rng = np.random.default_rng(seed)
    return {"timings_ms": {h: [v * drift(k) * (1 + noise * rng.standard_normal()) for k in range(rounds)]
                           for h, v in ms.items()}, "rounds": rounds, "started": "2026-12-07T15:00:00+00:00"}


def test_timings_taken_at_different_moments_claim_no_latency_difference():
    """The issue's case: a member timed 6.20 ms and the baseline 8.25 ms (each with a narrow
    interval) forty minutes apart; the same baseline had timed 6.72 ms before. Without a paired
    timing nothing is claimed, and the line says why."""
    front = [_row(0.80, 6.20, lat_half=0.05, arch_hash="m")]
    base = _row(0.80, 8.25, lat_half=0.05, arch_hash="base")
    res = resolution(front, base, ["accuracy", "latency"])
    assert res["latency"]["paired"] is False and "differ_from_baseline" not in res["latency"]
    line = noise_line(res)
    assert ("latency: no difference claimed: the front's members and the baseline were timed at different moments, "
            "and one timing's interval does not cover the machine's drift between them (no paired timing") in line
    assert "ordered by latency" not in line
    # a paired timing of another front (the search went on since) does not stand for this one
    other = resolution(front, base, ["latency"], _paired({"x": 6.2, "base": 8.25}))
    assert other["latency"]["paired"] is False and "changed since" in other["latency"]["why"]


def test_paired_timings_judge_the_difference_whatever_the_drift():
    """Timed together: the same 6.2 vs 6.2 ms (ratio 1) under a 1.5x drift is not a difference,
    6.2 vs 8.25 is; the ratios to the baseline are given with their intervals."""
    front = [_row(0.8, 6.2, arch_hash="m"), _row(0.8, 6.3, arch_hash="n")]
    base = _row(0.8, 8.25, arch_hash="base")
    same = resolution(front, base, ["latency"], _paired({"m": 6.2, "n": 6.2, "base": 6.2}))["latency"]
    assert same["paired"] and same["differ_from_baseline"] == 0 and same["neighbour_pairs_resolved"] == 0
    apart = resolution(front, base, ["latency"], _paired({"m": 6.2, "n": 7.0, "base": 8.25}))["latency"]
    assert apart["differ_from_baseline"] == 2 and apart["neighbour_pairs_resolved"] == 1
    for x in apart["ratio_to_baseline"]:
        assert x["ci"][0] <= x["ratio"] <= x["ci"][1] < 1.0
    assert sorted(x["ratio"] for x in apart["ratio_to_baseline"]) == [pytest.approx(6.2 / 8.25, rel=0.02),
                                                                      pytest.approx(7.0 / 8.25, rel=0.02)]
    # the baseline not in the paired timing: the front's order is judged, the baseline is not
    alone = resolution(front, base, ["latency"], _paired({"m": 6.2, "n": 7.0}))["latency"]
    assert alone["baseline_paired"] is False and "differ_from_baseline" not in alone
    assert "the baseline was not timed with them" in noise_line({"latency": alone})


@pytest.mark.parametrize("bad", [float("nan"), -1.0, 0.0, 1e308, "x", None])
def test_a_corrupt_paired_timing_is_not_read(bad):
    rec = _paired({"m": 6.2, "base": 8.0})
    rec["timings_ms"]["m"][3] = bad
    front, base = [_row(0.8, 6.2, arch_hash="m")], _row(0.8, 8.0, arch_hash="base")
    assert resolution(front, base, ["latency"], rec)["latency"]["paired"] is False


def test_differences_beyond_noise_are_counted():
    front = [_row(0.70, 10.0), _row(0.80, 10.1, lat_half=0.5)]
    res = resolution(front, _row(0.80, 20.0), ["accuracy", "latency"])
    assert res["accuracy"] == {"measured": True, "members": 2, "neighbour_pairs": 1, "neighbour_pairs_resolved": 1,
                               "differ_from_baseline": 1}
    assert res["latency"]["paired"] is False  # no paired timing: nothing claimed
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
    # the front and the baseline timed together at the end, stored on the study, used by the line
    lat = res.noise["latency"]
    assert lat["paired"] is True and lat["members"] == len(res.front)
    assert len(lat["ratio_to_baseline"]) == len(res.front)
    paired = optuna.load_study(study_name="s", storage=url).user_attrs["latency_paired"]
    assert set(paired["timings_ms"]) == {r["arch_hash"] for r in [*res.front, res.baseline]}
    assert paired["reference"] == res.baseline["arch_hash"] and paired["rounds"] == lat["rounds"] >= 6
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
