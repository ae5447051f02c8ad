"""Study storage: Optuna's RDB storage plus nasconv's own tables in the same database, and the
weights a search keeps beside it.

``open_storage(url)`` (``readonly=True`` for commands that only read: nothing is created, media
may be read-only) gives an ``optuna.storages.RDBStorage`` (with heartbeats, so that trials
of a driver that died can be failed) and :class:`NasconvTables` for the evaluation cache, the
Pareto-front snapshots and the study attributes the first driver decides. Any SQLAlchemy URL
works: ``sqlite:///studies/nasconv.db`` by default (drivers on one machine may share a file: their
writes take turns), ``postgresql+psycopg://user@host/db`` for drivers on several machines.
:class:`StudyLock` makes a driver's count of a study's trials and its ask of a new one atomic,
so that ``--trials`` is an exact total however many drivers share the study.

``open_study(name, url)`` opens one stored study read-only. A full disk, read-only media or a
file that is no database end in one :class:`~nasconv.errors.StorageError` line naming the file.

Kept weights (:mod:`nasconv.storage.weights`): ``<weights dir>/<study>/<arch_hash>.pt`` files
beside a SQLite database (or under ``$NASCONV_WEIGHTS_DIR``).

May import: errors, paths, the Optuna compatibility module, Optuna, SQLAlchemy and torch (to save
and load kept weights); nothing of search, evaluation, export or the CLI.
"""

from nasconv.storage.connect import open_storage, open_study
from nasconv.storage.database import (
    DEFAULT_STORAGE,
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    SQLITE_TIMEOUT_S,
    is_database_locked,
    locked_error,
    parse_url,
    safe_url,
)
from nasconv.storage.locks import StudyLock
from nasconv.storage.tables import FrontSnapshot, NasconvTables, RungResult
from nasconv.storage.weights import (
    WEIGHTS_DIR_ENV,
    adopt_weights,
    load_weights,
    save_weights,
    weights_dir,
    weights_path,
)

__all__ = ["DEFAULT_STORAGE", "GRACE_PERIOD_S", "HEARTBEAT_INTERVAL_S", "SQLITE_TIMEOUT_S", "FrontSnapshot",
           "NasconvTables", "RungResult", "StudyLock", "WEIGHTS_DIR_ENV", "adopt_weights", "is_database_locked",
           "load_weights", "locked_error", "open_storage", "open_study", "parse_url", "safe_url", "save_weights",
           "weights_dir", "weights_path"]
