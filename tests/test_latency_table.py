"""nasconv.latency.table and the profiler's bookkeeping on real SQLite and PostgreSQL: rows keyed by
the device setting, resuming, and refusing another setting, missing parts and corrupt rows."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from nasconv.latency import PART_ROUNDS, LatencyTableError, load_model, profile_space, round_key, space_parts
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
        assert (rep.parts, rep.measured, rep.skipped, rep.networks_measured, rep.timings) == (13, 13, 0, 4, 39)
        # parts, each part's 3 rounds (key#1..#3), calibration networks (net:<hash>) and their 3 rounds
        assert len(_rows(table, setting)) == 13 + 3 * 13 + 4 + 3 * 4
        assert rep.calibration.retest_rel_sd > 0  # from the networks' rounds
        again = profile_space(space, table, setting, repeats=QUICK, network_repeats=QUICK, networks=4)
        assert (again.measured, again.skipped, again.networks_measured, again.timings) == (0, 13, 0, 0)
        p = load_model(table, space, setting).predict(space.baseline())
        assert p.low_ms <= p.latency_ms <= p.high_ms and p.latency_ms > 0
    finally:
        tables.dispose()


def test_interrupted_profile_keeps_what_it_measured_and_resumes(url, tmp_path):
    space = tiny_space(tmp_path)

    def stop_after_five_parts(done, total, key):
        if done == 4 + 5:  # the first round of the 4 networks, then 5 parts of the first pass
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profiled(url, space, progress=stop_after_five_parts)
    tables, table, setting, rep = profiled(url, space)
    try:  # the 5 timings kept, not taken again; no part complete before
        assert (rep.skipped, rep.measured, rep.timings) == (0, 13, 3 * 13 - 5)
        assert rep.networks_measured == 4  # their 2nd and 3rd rounds
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
    with table.engine.begin() as c:  # a part and its rounds gone
        c.execute(sa.delete(LatencyBlockRow).where(LatencyBlockRow.block_key.like("head:8>10@8%")))
    with pytest.raises(LatencyTableError, match="1 of the 13 parts of space 'tiny20' are missing"):
        load_model(table, space, setting)
    rep = profile_space(space, table, setting, repeats=QUICK, network_repeats=QUICK, networks=4)
    assert (rep.measured, rep.timings) == (1, 3)
    key = "basic:gc(groups=2):8>16x1/s2@16"
    with table.engine.begin() as c:  # the part's row and one of its rounds corrupt
        c.execute(sa.update(LatencyBlockRow).where(LatencyBlockRow.block_key.in_([key, key + "#2"]))
                  .values(median_ms=-1.0))
    with pytest.raises(LatencyTableError, match=r"corrupt row .*gc\(groups=2\):8>16x1/s2@16"):
        load_model(table, space, setting)
    rep = profile_space(space, table, setting, repeats=QUICK, network_repeats=QUICK, networks=4)
    assert (rep.measured, rep.timings, rep.networks_measured) == (1, 1, 0)  # the corrupt round timed again
    assert load_model(table, space, setting).predict(space.baseline()).latency_ms > 0


def test_a_parts_row_is_the_middle_of_its_rounds(tiny_table):
    """Each part is timed in 3 passes at different moments; the one kept is the middle timing,
    so a burst during one pass moves none of the stored medians."""
    space, table, setting = tiny_table
    with table.engine.connect() as c:
        rows = dict(c.execute(sa.select(LatencyBlockRow.block_key, LatencyBlockRow.median_ms)).all())
    for p in space_parts(space):
        rounds = sorted(rows[round_key(p.key, i)] for i in range(PART_ROUNDS))
        assert rows[p.key] == rounds[1], p.key
    # a round that ran during a burst (10x slower) changes nothing once the part is rebuilt
    key = space_parts(space)[3].key
    before = rows[key]
    with table.engine.begin() as c:
        c.execute(sa.update(LatencyBlockRow).where(LatencyBlockRow.block_key == round_key(key, 0))
                  .values(median_ms=before * 10, ci_low_ms=before * 9, ci_high_ms=before * 11))
        c.execute(sa.delete(LatencyBlockRow).where(LatencyBlockRow.block_key == key))
    profile_space(space, table, setting, repeats=QUICK, network_repeats=QUICK, networks=4)
    with table.engine.connect() as c:
        after = c.execute(sa.select(LatencyBlockRow.median_ms).where(LatencyBlockRow.block_key == key)).scalar()
    assert after < before * 10 and after in sorted(rows[round_key(key, i)] for i in range(PART_ROUNDS))
