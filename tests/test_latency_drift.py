"""nasconv.latency.drift: a table made while the device ran at another speed is scaled to the
device's speed today, from a few of its own calibration networks timed again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from nasconv.latency import corrected, drift_factor, load_model
from nasconv.storage.tables import LatencyBlockRow
from tests.latency_helpers import profiled, stored_as_if_faster, tiny_space


def test_a_table_made_on_a_faster_day_is_scaled_to_the_device_today(tmp_path):
    space = tiny_space(tmp_path)
    tables, table, setting, _ = profiled(f"sqlite:///{tmp_path}/s.db", space, networks=3)
    try:
        model = load_model(table, space, setting)
        stored_as_if_faster(table.engine, space, setting, 4.0)
        scaled, f = corrected(model, table, "cpu")
        assert 2.0 < f < 8.0  # ~4x: two careful timings of these sub-ms networks can differ ~2x
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
