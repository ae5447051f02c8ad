"""A study's claim lock: held by a driver while it counts the study's trials and asks for a new
one, so that drivers beside it (threads, processes, machines) never both take the last slot of
``--trials`` (each, having counted first, would see it free).

- A server database (PostgreSQL): a row lock (``SELECT ... FOR UPDATE``) on the study's row of
  ``nasconv_study_locks``, held by an open transaction of nasconv's own connection while Optuna
  writes the new trial on its connection; released at commit, and by the server when the driver's
  connection dies.
- A SQLite file: an ``flock`` on ``<db>-nasconv.lock`` beside it (one for all the file's
  studies, as a claim is brief; created once, safe to delete while no driver runs). SQLite's own
  write lock cannot serve: held, it would keep Optuna's connection from writing the trial. The
  lock belongs to the open file: a killed driver's goes with its process, and two drivers in one
  process (two threads) still exclude each other.
- An in-memory SQLite database has one process: a lock of this process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import orm

from nasconv.errors import StorageError
from nasconv.paths import os_problem
from nasconv.storage.database import sqlite_file
from nasconv.storage.tables import NasconvTables, StudyLockRow

__all__ = ["StudyLock", "lock_file"]

_IN_PROCESS = threading.Lock()


def lock_file(db: str) -> Path:
    """The lock file of the SQLite database file ``db``."""
    path = Path(db).expanduser().absolute()
    return path.with_name(path.name + "-nasconv.lock")


class StudyLock:
    """``with lock.held(): ...``: one driver at a time per study (see the module's text)."""

    def __init__(self, tables: NasconvTables, study_name: str) -> None:
        self.engine, self.study_name = tables.engine, study_name
        db = sqlite_file(tables.engine.url)
        self.path = lock_file(db) if db is not None else None
        self.in_memory = db is None and tables.engine.url.get_backend_name() == "sqlite"

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.path is not None:
            with self._file():
                yield
        elif self.in_memory:
            with _IN_PROCESS:
                yield
        else:
            with self._row():
                yield

    @contextlib.contextmanager
    def _file(self) -> Iterator[None]:
        assert self.path is not None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot open the study lock file {self.path}: {os_problem(exc, self.path)}") \
                from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextlib.contextmanager
    def _row(self) -> Iterator[None]:
        row = sa.select(StudyLockRow.study_name).where(StudyLockRow.study_name == self.study_name) \
            .with_for_update()
        for _ in range(3):
            with self.engine.connect() as conn:
                with conn.begin():
                    if conn.execute(row).first() is not None:
                        yield
                        return
            self._add_row()  # the first claim in this study (or its row was deleted with it)
        raise StorageError(f"cannot lock study {self.study_name!r}: its row in {StudyLockRow.__tablename__} "
                           "keeps disappearing")

    def _add_row(self) -> None:
        with orm.Session(self.engine) as s:
            s.add(StudyLockRow(study_name=self.study_name))
            try:
                s.commit()
            except sa.exc.IntegrityError:  # another driver added it a moment ago
                s.rollback()
