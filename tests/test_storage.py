"""nasconv.storage: SQLite settings, nasconv's tables, one-line errors."""

from __future__ import annotations

import sqlite3

import optuna
import pytest

from nasconv.errors import StorageError
from nasconv.storage import open_storage


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return request.getfixturevalue("postgres_url")


def _study(url: str) -> optuna.Study:
    storage, tables = open_storage(url, heartbeat=False)
    tables.dispose()
    return optuna.create_study(study_name="s", storage=storage, load_if_exists=True)


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
