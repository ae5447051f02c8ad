"""``open_storage(url)``: Optuna's RDB storage (with heartbeats) and nasconv's tables for one URL."""

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
    is_database_locked,
    locked_error,
    parse_url,
    safe_url,
)
from nasconv.storage.tables import NasconvTables


def open_storage(url: str = DEFAULT_STORAGE, *, heartbeat: bool = True) -> tuple[optuna.storages.RDBStorage,
                                                                                   NasconvTables]:
    """Optuna's RDB storage and nasconv's tables for one SQLAlchemy URL; one-line errors."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        _prepare_sqlite(parsed)
    try:
        kwargs: dict[str, Any] = {"engine_kwargs": _engine_kwargs(parsed)}
        if heartbeat:
            kwargs.update(heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S)
        storage = _while_racing(lambda: optuna.storages.RDBStorage(url, **kwargs))
        if parsed.get_backend_name() == "sqlite":
            _sqlite_connection_settings(storage.engine)
            storage.engine.dispose()  # connections opened while Optuna set up its tables: reopened with it
    except StorageError:
        raise
    except Exception as exc:
        if is_database_locked(exc):
            raise locked_error(url) from None
        raise StorageError(f"cannot open storage {safe_url(url)}: {_one_line(exc)}") from None
    return storage, NasconvTables(url)
