"""``open_storage(url)``: Optuna's RDB storage (with heartbeats) and nasconv's tables for one URL;
``open_study(name, url)``: one stored study, read-only unless asked."""

from __future__ import annotations

from typing import Any

import optuna

from nasconv.errors import StorageError
from nasconv.storage.database import (
    DEFAULT_STORAGE,
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    _engine_kwargs,
    _one_line,
    _prepare_sqlite,
    _sqlite_connection_settings,
    _while_racing,
    database_problem,
    is_database_locked,
    locked_error,
    parse_url,
    readonly_sqlite_kwargs,
    safe_url,
    sqlite_file,
    translate_errors,
)
from nasconv.storage.tables import NasconvTables


def open_storage(url: str = DEFAULT_STORAGE, *, heartbeat: bool = True,
                 readonly: bool = False) -> tuple[optuna.storages.RDBStorage, NasconvTables]:
    """Optuna's RDB storage and nasconv's tables for one SQLAlchemy URL; one-line errors.

    ``readonly``: for commands that only read (no heartbeats): a SQLite file is opened read-only,
    and nothing is created (no folder, no database for a mistyped path, no tables).
    """
    parsed = parse_url(url)
    db = sqlite_file(parsed)
    if readonly:
        heartbeat = False
        engine_kwargs = readonly_sqlite_kwargs(parsed)
    else:
        if parsed.get_backend_name() == "sqlite":
            _prepare_sqlite(parsed)
        engine_kwargs = _engine_kwargs(parsed)
    try:
        kwargs: dict[str, Any] = {"engine_kwargs": engine_kwargs, "skip_table_creation": readonly}
        if heartbeat:
            kwargs.update(heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S)
        storage = _while_racing(lambda: optuna.storages.RDBStorage(url, **kwargs))
        if db is not None:
            translate_errors(storage.engine, db)
        if parsed.get_backend_name() == "sqlite" and not readonly:
            _sqlite_connection_settings(storage.engine)
            storage.engine.dispose()  # connections opened while Optuna set up its tables: reopened with it
    except StorageError:
        raise
    except Exception as exc:
        if is_database_locked(exc):
            raise locked_error(url) from None
        if db is not None:
            problem = database_problem(exc, db)
            if problem is not None:
                raise problem from None
            if readonly and "no such table" in str(exc):
                raise StorageError(f"cannot open the SQLite database {db}: it is not a valid nasconv/Optuna database: "
                                   "it holds no Optuna tables") \
                    from None
        raise StorageError(f"cannot open storage {safe_url(url)}: {_one_line(exc)}") from None
    return storage, NasconvTables(url, readonly=readonly, engine_kwargs=engine_kwargs)


def open_study(name: str, url: str = DEFAULT_STORAGE, *, readonly: bool = True) -> tuple[optuna.Study, NasconvTables]:
    """The stored study ``name`` and nasconv's tables; :class:`StorageError` naming the studies
    there when it is missing."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, tables = open_storage(url, heartbeat=False, readonly=readonly)
    try:
        names = optuna.study.get_all_study_names(storage)
        if name not in names:
            known = ", ".join(names) if names else "none"
            raise StorageError(f"no study {name!r} in {safe_url(url)}; studies there: {known}")
        return optuna.load_study(study_name=name, storage=storage), tables
    except BaseException:
        tables.dispose()
        raise
