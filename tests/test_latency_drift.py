"""nasconv.latency.drift: a table made while the device ran at another speed is scaled to the
device's speed today, from a few of its own calibration networks timed again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from nasconv.latency import corrected, drift_factor, load_model
from nasconv.storage.tables import LatencyBlockRow
from tests.latency_helpers import inject_drift_timings, profiled, stored_as_if_faster, tiny_space


def test_a_table_made_on_a_faster_day_is_scaled_to_the_device_today(tmp_path, monkeypatch):
    """Timings injected (tests.latency_helpers.now_ms): the device times each network exactly 4x
    what the table holds, so the drift is exactly 4 and the model is scaled by it."""
    inject_drift_timings(monkeypatch)
    space = tiny_space(tmp_path)
    tables, table, setting, _ = profiled(f"sqlite:///{tmp_path}/s.db", space, networks=3)
    try:
        model = load_model(table, space, setting)
        stored_as_if_faster(table.engine, space, setting, 4.0)
        scaled, f = corrected(model, table, "cpu")
        assert f == pytest.approx(4.0)
        arch = space.baseline()
        assert scaled.predict(arch).latency_ms == pytest.approx(f * model.predict(arch).latency_ms)
        low, high = scaled.predict(arch).low_ms, scaled.predict(arch).high_ms
        assert low == pytest.approx(f * model.predict(arch).low_ms) and high > low
    finally:
        tables.dispose()


def test_a_table_without_whole_networks_is_used_as_it_is(tmp_path):
    space = tiny_space(tmp_path)
    tables, table, setting, _ = profiled(f"sqlite:///{tmp_path}/s.db", space, networks=2)
    try:
        model = load_model(table, space, setting)
        with table.engine.begin() as c:
            c.execute(sa.delete(LatencyBlockRow).where(LatencyBlockRow.block_key.like("net:%")))
        assert drift_factor(model, table, "cpu") is None
        assert corrected(model, table, "cpu") == (model, None)
    finally:
        tables.dispose()


def test_the_drift_is_the_median_ratio_and_a_small_one_is_left_alone(tmp_path, monkeypatch):
    """Three networks timed 1.01x, 9x and 1.02x what the table holds: the drift is their median
    (1.02: one network in a burst does not move it), within the 3% tolerance: the model is kept."""
    import nasconv.latency.drift as drift
    from tests.latency_helpers import now_ms

    space = tiny_space(tmp_path)
    tables, table, setting, _ = profiled(f"sqlite:///{tmp_path}/s.db", space, networks=3)
    try:
        model = load_model(table, space, setting)
        stored_as_if_faster(table.engine, space, setting, 1.0)  # the table holds now_ms(network)
        factors = iter([1.01, 9.0, 1.02])
        monkeypatch.setattr(drift, "time_network", lambda a, s, d: now_ms(a) * next(factors))
        scaled, f = corrected(model, table, "cpu")
        assert f == pytest.approx(1.02) and scaled is model
    finally:
        tables.dispose()
