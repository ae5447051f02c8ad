"""``nasconv latency profile|predict``: output, one-line errors and exit codes, Ctrl-C while profiling."""

from __future__ import annotations

import json
import signal

import pytest
import sqlalchemy as sa

from nasconv.cli import main
from nasconv.errors import Terminated
from nasconv.latency import LatencyTable
from nasconv.storage import NasconvTables
from nasconv.storage.tables import LatencyBlockRow
from tests.latency_helpers import tiny_space


def _profile(tmp_path, *extra):
    return main(["latency", "profile", "--space", str(tmp_path / "tiny20.yaml"), "--storage",
                 f"sqlite:///{tmp_path}/s.db", "--threads", "1", "--quick", "--networks", "3", *extra])


def _predict(tmp_path, *extra):
    return main(["latency", "predict", "--space", str(tmp_path / "tiny20.yaml"), "--storage",
                 f"sqlite:///{tmp_path}/s.db", *extra])


def _stored(tmp_path) -> int:
    t = NasconvTables(f"sqlite:///{tmp_path}/s.db")
    with t.engine.connect() as c:
        n = c.execute(sa.select(sa.func.count()).select_from(LatencyBlockRow)).scalar()
    t.dispose()
    return n


def test_profile_then_predict(tmp_path, capsys):
    tiny_space(tmp_path)
    assert _profile(tmp_path) == 0
    out = capsys.readouterr().out
    assert "13 parts, 13 measured now (39 timings), 0 already in" in out and "calibration: measured = " in out
    assert _predict(tmp_path, "--threads", "1", "--json") == 0
    got = json.loads(capsys.readouterr().out)
    assert got["latency_ms"] > 0 and got["interval_ms"][0] < got["latency_ms"] < got["interval_ms"][1]
    assert got["setting"]["threads"] == 1 and got["setting"]["precision"] == "fp32"
    assert _predict(tmp_path, "--threads", "1") == 0
    assert "ms predicted (95% interval" in capsys.readouterr().out
    # another thread count: refused in one line that says what differs and how to make a table
    assert _predict(tmp_path, "--threads", "2") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "threads 1 (here 2)" in err and "nasconv latency profile" in err


@pytest.mark.parametrize("stop, code", [(KeyboardInterrupt, 130), (Terminated(signal.SIGTERM), 143)])
def test_ctrl_c_while_profiling_keeps_the_rows_and_the_next_run_resumes(tmp_path, capsys, monkeypatch, stop, code):
    tiny_space(tmp_path)
    real_put, calls = LatencyTable.put, []

    def put_then_interrupt(self, *args):
        real_put(self, *args)
        calls.append(1)
        if len(calls) == 3 + 4:  # the first round of the 3 networks, then the first pass's first 4 parts
            raise stop

    monkeypatch.setattr(LatencyTable, "put", put_then_interrupt)
    assert _profile(tmp_path) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "continues" in err
    assert "4 of the 39 timings of the 13 parts of tiny20 (3 each) are stored, and 3 of the 9 of its 3 whole" in err
    assert _stored(tmp_path) == 2 * 3 + 4  # the networks' first rounds (and their rows so far), 4 part timings
    monkeypatch.setattr(LatencyTable, "put", real_put)
    assert _profile(tmp_path) == 0
    assert "13 measured now (35 timings), 0 already in" in capsys.readouterr().out  # 4 timings kept, not redone
    assert _stored(tmp_path) == 13 * (1 + 3) + 3 * (1 + 3)  # parts and networks, 3 rounds each


@pytest.mark.parametrize("args, code, text", [
    (["--threads", "0"], 2, "--threads: must be an integer in [1,"),
    (["--batch", "0"], 2, "--batch: must be an integer in [1, 1024]"),
    (["--arch", "missing.json"], 1, "missing.json"),
    (["--device", "cuda:7"], 1, "--device cuda:7"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, code, text):
    tiny_space(tmp_path)
    assert _predict(tmp_path, "--threads", "1", *args) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err and "Traceback" not in err


def test_predict_now_scales_the_table_to_the_device_speed_today(tmp_path, capsys, monkeypatch):
    """``--now`` times the table's calibration networks again: a table whose networks are stored as
    if the device had been 4x faster predicts 4x more, and says so. The timings are injected
    (tests.latency_helpers.now_ms): what is tested is what the code does with them."""
    from nasconv.latency import current_setting
    from nasconv.spaces import load_space
    from tests.latency_helpers import inject_drift_timings, stored_as_if_faster

    inject_drift_timings(monkeypatch)

    tiny_space(tmp_path)
    assert _profile(tmp_path) == 0
    capsys.readouterr()
    assert _predict(tmp_path, "--threads", "1", "--json") == 0
    before = json.loads(capsys.readouterr().out)
    assert before["drift"] is None
    t = NasconvTables(f"sqlite:///{tmp_path}/s.db")
    stored_as_if_faster(t.engine, load_space(str(tmp_path / "tiny20.yaml")), current_setting("cpu", threads=1), 4.0)
    t.dispose()
    assert _predict(tmp_path, "--threads", "1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] == pytest.approx(before["latency_ms"])  # as stored
    assert _predict(tmp_path, "--threads", "1", "--json", "--now") == 0
    now = json.loads(capsys.readouterr().out)
    assert now["drift"] == pytest.approx(4.0)
    assert now["latency_ms"] == pytest.approx(now["drift"] * before["latency_ms"])
    assert _predict(tmp_path, "--threads", "1", "--now") == 0
    assert "x what it did when the table was made; the prediction is scaled by that" in capsys.readouterr().out
