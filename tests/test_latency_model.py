"""nasconv.latency.model: the calibration fit, the prediction from the table, its speed."""

from __future__ import annotations

import dataclasses
import math
import random
import time

import pytest
import torch

from nasconv.latency import (
    Calibration,
    DeviceSetting,
    LatencyModel,
    LatencyTableError,
    arch_key_counts,
    fit_calibration,
    load_model,
    space_parts,
)
from nasconv.latency.model import retest_spread
from nasconv.latency.table import BlockLatency
from nasconv.spaces import load_space
from tests.latency_helpers import profiled, tiny_space


def test_fit_recovers_a_linear_map_and_measures_its_spread():
    exact = fit_calibration([(x, 0.5 + 1.25 * x) for x in (1.0, 2.0, 4.0, 8.0)])
    assert exact.intercept_ms == pytest.approx(0.5) and exact.slope == pytest.approx(1.25)
    assert exact.rel_residual_sd == pytest.approx(0.0, abs=1e-12)
    noisy = fit_calibration([(1.0, 1.1), (2.0, 1.8), (4.0, 4.4), (8.0, 7.2)])
    assert 0.05 < noisy.rel_residual_sd < 0.2 and noisy.rel_half_width() > 2 * noisy.rel_residual_sd
    assert fit_calibration([(2.0, 3.0)]).slope == pytest.approx(1.5)  # one network: a ratio


def test_a_network_timed_during_another_process_does_not_bend_the_fit():
    points = [(x, 0.2 + 1.1 * x) for x in (2.0, 3.0, 5.0, 7.0, 9.0)] + [(6.0, 2.4 * (0.2 + 1.1 * 6.0))]
    cal = fit_calibration(points)
    assert cal.slope == pytest.approx(1.1, rel=1e-3) and cal.intercept_ms == pytest.approx(0.2, abs=1e-2)
    assert cal.rel_residual_sd < 0.01  # the spread of the networks timed alone


def test_one_timings_spread_is_estimated_robustly_and_widens_the_interval():
    """Networks timed 3 times each at different moments: the spread of one timing, from the
    rounds' ranges; a network timed during a burst does not set it; the interval grows with it."""
    rng = random.Random(0)
    rounds = [[m * math.exp(rng.gauss(0, 0.05)) for _ in range(3)] for m in (2.0, 3.0, 5.0, 7.0, 9.0) * 20]
    assert 0.04 < retest_spread(rounds) < 0.06
    burst = rounds[:9] + [[2.0, 2.0 * 2.4, 2.05]]  # one round 2.4x slower
    assert retest_spread(burst) < 0.08
    assert retest_spread([[1.0]]) == 0.0  # one timing each: no spread known
    cal = Calibration(0.0, 1.0, 10, 0.02)
    wider = dataclasses.replace(cal, retest_rel_sd=0.05)
    assert wider.rel_half_width() > 2.4 * cal.rel_half_width()
    assert Calibration.from_dict({k: v for k, v in wider.to_dict().items() if k != "retest_rel_sd"}) == cal


def test_prediction_is_the_calibrated_sum_of_the_stored_medians(tmp_path):
    space = tiny_space(tmp_path)
    tables, table, setting, rep = profiled(f"sqlite:///{tmp_path}/s.db", space)
    try:
        model = load_model(table, space, setting)
        blocks = table.blocks(setting, [p.key for p in space_parts(space)], space=space.name)
        shallow = space.baseline()
        deep = space.make_arch((st.op, 2, st.width) for st in shallow.stages)
        for arch in (shallow, deep):
            by_hand = sum(n * blocks[k].median_ms for k, n in arch_key_counts(arch).items())
            p = model.predict(arch)
            cal = rep.calibration
            assert p.block_sum_ms == pytest.approx(by_hand)
            assert p.latency_ms == pytest.approx(cal.intercept_ms + cal.slope * by_hand)
            assert p.low_ms < p.latency_ms < p.high_ms
        assert model.predict(deep).block_sum_ms > model.predict(shallow).block_sum_ms
        other = load_space("resnet20").baseline()
        with pytest.raises(LatencyTableError, match="is not in the latency table of space 'tiny20'"):
            model.predict(other)
    finally:
        tables.dispose()


def test_prediction_takes_well_under_a_millisecond(monkeypatch):
    """What the code decides: a prediction builds no network (so it cannot cost a measurement);
    its speed is measured in benchmarks/latency_model.py (``predict_us``): the CPU-time bound here
    is 40x the target, which no busy machine crosses."""
    space = load_space("resnet50-all")
    blocks = {p.key: BlockLatency(1.0 + i % 7, 0.05) for i, p in enumerate(space_parts(space))}
    model = LatencyModel(space, DeviceSetting("cpu", "x", 1, 1), blocks, Calibration(0.5, 1.1, 10, 0.05))
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(300)]
    def no_network(*a, **k):
        raise AssertionError("a prediction built a network")

    monkeypatch.setattr(torch.nn.Module, "__init__", no_network)
    t0 = time.process_time()  # this process's CPU time: another process on the machine does not count
    for a in archs:
        model.predict(a)
    per_arch_ms = (time.process_time() - t0) / len(archs) * 1e3
    assert per_arch_ms < 20, per_arch_ms


@pytest.mark.parametrize("bad", [{"slope": 1.0}, {"intercept_ms": 0, "slope": -1, "n": 3, "rel_residual_sd": 0.1},
                                 {"intercept_ms": 0, "slope": "x", "n": 3, "rel_residual_sd": 0.1}])
def test_a_corrupt_calibration_is_one_error(bad):
    with pytest.raises(LatencyTableError, match="corrupt calibration"):
        Calibration.from_dict(bad)
