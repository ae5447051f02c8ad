"""nasconv.latency.table and the profiler's bookkeeping on real SQLite and PostgreSQL: rows keyed by
the device setting, resuming, and refusing another setting, missing parts and corrupt rows."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from nasconv.latency import LatencyTableError, load_model, profile_space
from nasconv.storage.tables import LatencyBlockRow
from tests.latency_helpers import QUICK, profiled, tiny_space


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/studies.db"
    return request.getfixturevalue("postgres_url")


def _rows(table, setting):
    with table.engine.connect() as c:
        return c.execute(sa.select(LatencyBlockRow.block_key, LatencyBlockRow.threads)
                         .where(LatencyBlockRow.threads == setting.threads)).all()


def test_profile_stores_resumes_and_predicts(url, tmp_path):
    space = tiny_space(tmp_path)
    tables, table, setting, rep = profiled(url, space)
    try:
        assert (rep.parts, rep.measured, rep.skipped, rep.networks_measured) == (13, 13, 0, 4)
        assert len(_rows(table, setting)) == 13 + 4  # parts + calibration networks (net:<hash>)
        again = profile_space(space, table, setting, repeats=QUICK, network_repeats=QUICK, networks=4)
        assert (again.measured, again.skipped, again.networks_measured) == (0, 13, 0)
        p = load_model(table, space, setting).predict(space.baseline())
        assert p.low_ms <= p.latency_ms <= p.high_ms and p.latency_ms > 0
    finally:
        tables.dispose()


def test_interrupted_profile_keeps_what_it_measured_and_resumes(url, tmp_path):
    space = tiny_space(tmp_path)

    def stop_after_five_parts(done, total, key):
        if done == 4 + 5:  # the first round of the 4 networks, then 5 parts
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profiled(url, space, progress=stop_after_five_parts)
    tables, table, setting, rep = profiled(url, space)
    try:
        assert rep.skipped == 5 and rep.measured == 8 and rep.networks_measured == 0
        assert rep.calibration is not None and rep.calibration.n == 4
    finally:
        tables.dispose()


@pytest.fixture
def tiny_table(tmp_path):
    """(space, table, setting) of the tiny space profiled into SQLite."""
    space = tiny_space(tmp_path)
    tables, table, setting, _ = profiled(f"sqlite:///{tmp_path}/s.db", space)
    yield space, table, setting
    tables.dispose()


def test_another_setting_is_refused_saying_what_differs(tiny_table):
    space, table, setting = tiny_table
    other = dataclasses.replace(setting, threads=setting.threads + 1, torch_version="9.9.9")
    with pytest.raises(LatencyTableError, match=r"threads 1 \(here 2\)") as err:
        load_model(table, space, other)
    assert "torch '2." in str(err.value) and "nasconv latency profile --space tiny20 --threads 2" in str(err.value)
    assert f"--storage sqlite:///{table.url.split(':///', 1)[1]}`" in str(err.value)  # the database it read
    with pytest.raises(LatencyTableError, match="no latency table for space 'resnet20'"):
        from nasconv.spaces import load_space

        load_model(table, load_space("resnet20"), setting)


def test_missing_and_corrupt_rows_are_named_and_measured_again(tiny_table):
    space, table, setting = tiny_table
    with table.engine.begin() as c:
        c.execute(sa.delete(LatencyBlockRow).where(LatencyBlockRow.block_key == "head:8>10@8"))
    with pytest.raises(LatencyTableError, match="1 of the 13 parts of space 'tiny20' are missing"):
        load_model(table, space, setting)
    assert profile_space(space, table, setting, repeats=QUICK, network_repeats=QUICK, networks=4).measured == 1
    key = "basic:gc(groups=2):8>16x1/s2@16"
    with table.engine.begin() as c:
        c.execute(sa.update(LatencyBlockRow).where(LatencyBlockRow.block_key == key).values(median_ms=-1.0))
    with pytest.raises(LatencyTableError, match=r"corrupt row .*gc\(groups=2\):8>16x1/s2@16"):
        load_model(table, space, setting)
    rep = profile_space(space, table, setting, repeats=QUICK, network_repeats=QUICK, networks=4)
    assert rep.measured == 1 and rep.networks_measured == 0  # the corrupt row, measured again
    assert load_model(table, space, setting).predict(space.baseline()).latency_ms > 0
