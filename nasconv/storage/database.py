"""Opening a study database by URL: Optuna's RDB storage with nasconv's SQLite settings, one-line errors.

SQLite files are switched to WAL mode with ``synchronous=NORMAL``; a writer waits
:data:`SQLITE_TIMEOUT_S` for another's lock; creating tables survives a race with another driver.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nasconv.errors import StorageError

DEFAULT_STORAGE = "sqlite:///studies/nasconv.db"
#: seconds between a driver's heartbeats for its running trials, and how long without one
#: before another driver may fail them
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 40
#: how long an SQLite writer waits for another process's write lock before "database is locked"
SQLITE_TIMEOUT_S = 60


def _prepare_sqlite(url: sa.engine.URL) -> None:
    db = url.database
    if not db or db == ":memory:":
        return
    parent = Path(db).expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the studies folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise StorageError(f"the studies folder {parent} is not writable; pass --storage with another URL")
    # Write-ahead logging: a commit appends to the log instead of rewriting pages and syncing
    # twice, and readers (optuna-dashboard, `nasconv pareto`) no longer block the driver. The
    # mode is stored in the file, so every later connection, nasconv's or not, uses it.
    try:
        con = sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S)
        try:
            con.execute("PRAGMA journal_mode=WAL").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc):
            raise locked_error(url.render_as_string()) from None
        raise StorageError(f"cannot open the SQLite database {db}: {exc}") from None


def _sqlite_connection_settings(engine: sa.engine.Engine) -> None:
    """Per connection: in WAL mode, sync at checkpoints instead of at every commit.

    A crashed or killed process loses nothing that was committed (the log is in the OS's
    hands); only a power failure can take back the last commits, and the database stays
    consistent either way.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()


def parse_url(url: str) -> sa.engine.URL:
    try:
        parsed = sa.engine.make_url(url)
    except Exception:
        raise StorageError(f"bad storage URL {url!r}; expected an SQLAlchemy URL such as "
                           "sqlite:///studies/nasconv.db or postgresql+psycopg://user@host:5432/db") from None
    try:
        parsed.get_dialect()
    except Exception as exc:
        raise StorageError(f"storage URL {url!r}: unsupported database or driver ({exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0]}); for PostgreSQL install nasconv[postgres] and use "
                           "postgresql+psycopg://") from None
    return parsed


def _engine_kwargs(url: sa.engine.URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        # Wait for a concurrent writer instead of failing at once with "database is locked".
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    return {"pool_pre_ping": True}


def _creation_race(exc: BaseException) -> bool:
    """Two processes creating the same tables at once: one of them fails on a duplicate."""
    e: BaseException | None = exc
    for _ in range(5):
        if e is None:
            return False
        if isinstance(e, sa.exc.IntegrityError):
            return True
        text = str(e).lower()
        if "already exists" in text or "duplicate key" in text or "unique constraint" in text:
            return True
        e = getattr(e, "orig", None) or e.__cause__ or e.__context__
    return False


def _while_racing(create: Any, attempts: int = 5) -> Any:
    """Run ``create`` (which creates tables if missing) again when it lost a race against
    another driver creating the same database: the second time, the tables are there."""
    for i in range(attempts):
        try:
            return create()
        except Exception as exc:
            if i == attempts - 1 or not _creation_race(exc):
                raise
            time.sleep(0.2 + random.random() * 0.5)


def safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def is_database_locked(exc: BaseException) -> bool:
    """An SQLite "database is locked" (or "busy"), however deeply Optuna or SQLAlchemy wrapped it."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).lower()
        if "database is locked" in text or "database table is locked" in text or "database is busy" in text:
            return True
        e = getattr(e, "orig", None) or e.__cause__ or e.__context__
    return False


def locked_error(url: str) -> StorageError:
    return StorageError(
        f"the SQLite database {safe_url(url)} stayed locked by another process for over "
        f"{SQLITE_TIMEOUT_S} s; SQLite suits one driver per file: for several drivers on one study use "
        "PostgreSQL (--storage postgresql+psycopg://user@host:5432/db)")


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}"
