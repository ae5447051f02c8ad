"""Stored latency timings are bounded when read (nasconv.latency.table): a row whose median or
interval is not finite, negative or beyond MAX_TIMING_MS (1e308 overflowed a sum: "internal error:
OverflowError"), and a calibration holding such a number, are named in the corrupt-row line.

The table is written by hand (known values, nothing measured): what is checked is what the code
decides about a stored row, not what the machine timed."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa

from nasconv.cli import main
from nasconv.latency import Calibration, LatencyTable, current_setting, load_model, open_tables, space_parts
from nasconv.latency.table import MAX_TIMING_MS, LatencyTableError, row_problem
from nasconv.profile import LatencyResult
from nasconv.storage.tables import LatencyBlockRow
from tests.latency_helpers import tiny_space


def _row(median=1.0, iqr=0.1, low=0.9, high=1.1, repeats=5) -> LatencyBlockRow:
    return LatencyBlockRow(median_ms=median, iqr_ms=iqr, ci_low_ms=low, ci_high_ms=high, repeats=repeats)


@pytest.mark.parametrize("row, problem", [
    (_row(median=1e308, high=1e308), "beyond 1e+09 ms"),
    (_row(high=1e308), "beyond 1e+09 ms"),
    (_row(iqr=1e300), "beyond 1e+09 ms"),
    (_row(median=math.inf, high=math.inf), "non-finite"),
    (_row(median=math.nan), "non-finite"),
    (_row(low=-math.inf), "non-finite"),
    (_row(median=None), "non-finite"),
    (_row(median=-1.0, low=-2.0), "not > 0"),
    (_row(repeats=0), "repeats 0"),
    (_row(repeats=10**12), "repeats"),
])
def test_a_row_out_of_bounds_is_refused_saying_why(row, problem):
    assert problem in row_problem(row)


def test_the_largest_bounded_row_is_usable():
    assert row_problem(_row(median=MAX_TIMING_MS, low=MAX_TIMING_MS / 2, high=MAX_TIMING_MS)) is None


@pytest.fixture()
def written(tmp_path):
    """The tiny space's table for this machine's 1-thread CPU setting, written with known values."""
    space = tiny_space(tmp_path)
    url = f"sqlite:///{tmp_path}/s.db"
    tables = open_tables(url)
    table = LatencyTable(tables, url)
    setting = current_setting("cpu", threads=1)
    for i, part in enumerate(space_parts(space)):
        ms = 0.01 * (i + 1)
        table.put(setting, part.key, LatencyResult(
            median_ms=ms, iqr_ms=ms / 10, rel_iqr=0.1, repeats=5, capped=False, batch_size=1, resolution=16,
            device="cpu", device_name=setting.device_name, threads=1, torch_version=setting.torch_version,
            ci_low_ms=ms * 0.9, ci_high_ms=ms * 1.1))
    cal = Calibration(intercept_ms=0.05, slope=1.1, n=4, rel_residual_sd=0.03,
                      points=((1.0, 1.15), (2.0, 2.25), (3.0, 3.35), (4.0, 4.45)), retest_rel_sd=0.02)
    table.put_calibration(setting, space.name, space.content_hash, cal.to_dict())
    yield space, table, setting, url, tmp_path
    tables.dispose()


def _predict(tmp_path, url) -> int:
    return main(["latency", "predict", "--space", str(tmp_path / "tiny20.yaml"), "--storage", url, "--threads", "1"])


@pytest.mark.parametrize("value", [1e308, math.inf, -1.0])
def test_a_stored_timing_out_of_bounds_is_the_corrupt_row_line_naming_it(written, value, capsys):
    space, table, setting, url, tmp_path = written
    assert _predict(tmp_path, url) == 0 and "ms predicted" in capsys.readouterr().out
    key = space_parts(space)[0].key
    with table.engine.begin() as c:
        c.execute(sa.update(LatencyBlockRow).where(LatencyBlockRow.block_key == key)
                  .values(median_ms=value, ci_high_ms=max(value, 1.0)))
    assert _predict(tmp_path, url) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error" not in err, err
    assert f"corrupt row in the latency table ({url}): {key}:" in err and "latency profile --space tiny20" in err
    with pytest.raises(LatencyTableError, match="corrupt row"):
        load_model(table, space, setting)


@pytest.mark.parametrize("field, value", [("intercept_ms", 1e308), ("slope", 1e300), ("points", [[1.0, 1e308]])])
def test_a_calibration_out_of_bounds_is_named(written, field, value, capsys):
    import json

    from nasconv.storage.tables import LatencyCalibrationRow

    space, table, setting, url, tmp_path = written
    with table.engine.begin() as c:
        cal = json.loads(c.execute(sa.select(LatencyCalibrationRow.calibration_json)).scalar_one())
        cal[field] = value
        c.execute(sa.update(LatencyCalibrationRow).values(calibration_json=json.dumps(cal)))
    assert _predict(tmp_path, url) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error" not in err, err
    assert "corrupt calibration of space 'tiny20'" in err and "--recalibrate" in err
