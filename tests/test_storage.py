"""nasconv.storage: SQLite settings, batched user attributes, one-line errors."""

from __future__ import annotations

import sqlite3

import optuna
import pytest

from nasconv.errors import StorageError
from nasconv._optuna import set_user_attrs
from nasconv.storage import open_storage

ATTRS = {"arch": {"stages": [{"op": "tbc", "hyper": {"blocks": 4}}]}, "macs": 4_089_184_256, "ratio": 0.25,
         "ok": True, "none": None, "name": "résumé ✓", "list": [1, 2.5, "x"]}


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return request.getfixturevalue("postgres_url")


def _study(url: str) -> optuna.Study:
    storage, tables = open_storage(url, heartbeat=False)
    tables.dispose()
    return optuna.create_study(study_name="s", storage=storage, load_if_exists=True)


def test_set_user_attrs_round_trip_and_overwrite(storage_url):
    study = _study(storage_url)
    trial = study.ask()
    trial.set_user_attr("macs", 1)  # overwritten below
    trial.set_user_attr("kept", "yes")
    set_user_attrs(trial, ATTRS)
    assert trial.user_attrs == {**ATTRS, "kept": "yes"}
    study.tell(trial, 1.0)
    # a fresh connection reads what the one transaction wrote
    stored = _study(storage_url).trials[0].user_attrs
    assert stored == {**ATTRS, "kept": "yes"}


def test_set_user_attrs_on_a_finished_trial_raises_and_writes_nothing(storage_url):
    study = _study(storage_url)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(trial, {"late": 1})
    assert "late" not in _study(storage_url).trials[0].user_attrs


def test_set_user_attrs_falls_back_on_other_storages():
    study = optuna.create_study()  # in-memory
    trial = study.ask()
    set_user_attrs(trial, {"a": 1, "b": [2]})
    assert study.trials[0].user_attrs == {"a": 1, "b": [2]}


def test_sqlite_file_uses_wal(tmp_path):
    _study(f"sqlite:///{tmp_path}/w.db")
    con = sqlite3.connect(tmp_path / "w.db")
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


def test_not_a_database_is_one_line_error(tmp_path):
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not an SQLite database, just text " * 100)
    with pytest.raises(StorageError, match="cannot open the SQLite database .*junk.db"):
        open_storage(f"sqlite:///{bad}")


def test_forget_study_drops_its_history_and_keeps_the_cache(storage_url):
    from nasconv.storage import FrontSnapshot, NasconvTables

    tables = NasconvTables(storage_url)
    try:
        for name in ("a", "b"):
            tables.add_snapshot(name, FrontSnapshot(0, 1, [0], 1.5))
            tables.setdefault(name, "hv_reference", [1.0, 2.0])
        tables.put_cached("key", "hash", "resnet20", {"score": 1.0})
        tables.forget_study("a")
        assert tables.snapshots("a") == [] and len(tables.snapshots("b")) == 1
        assert tables.setdefault("a", "hv_reference", [3.0]) == [3.0]  # gone: a new value is taken
        assert tables.setdefault("b", "hv_reference", [3.0]) == [1.0, 2.0]
        assert tables.get_cached("key", "hash") == {"score": 1.0}
    finally:
        tables.dispose()
