"""Opening a study database by URL: Optuna's RDB storage with nasconv's SQLite settings, one-line errors.

SQLite files are switched to WAL mode with ``synchronous=NORMAL``; a writer waits
:data:`SQLITE_TIMEOUT_S` for another's lock; creating tables survives a race with another driver.
Readers (``pareto``, ``export``, ``dashboard``) open a SQLite file read-only and create nothing,
so that a database on read-only media can be read. A full disk, a read-only file system, a
refused permission or a file that is no database end in one :class:`StorageError` line naming
the file (:func:`database_problem`, installed on every engine by :func:`translate_errors`).
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nasconv.errors import StorageError
from nasconv.paths import disk_full, os_problem

DEFAULT_STORAGE = "sqlite:///studies/nasconv.db"
#: seconds between a driver's heartbeats for its running trials, and how long without one
#: before another driver may fail them
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 40
#: how long an SQLite writer waits for another process's write lock before "database is locked"
SQLITE_TIMEOUT_S = 60


#: SQLite primary result codes (``sqlite3.Error.sqlite_errorcode & 0xff``)
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_FULL, _SQLITE_NOTADB = 8, 10, 11, 14, 13, 26
_RESUME = "free space and run the same command again (what was committed is kept)"


def _sqlite_error(exc: BaseException) -> sqlite3.Error | None:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, sqlite3.Error):
            return e
        e = getattr(e, "orig", None) or e.__cause__ or e.__context__
    return None


def database_problem(exc: BaseException, db: str) -> StorageError | None:
    """One line for an SQLite error that the user must act on (full disk, read-only file or file
    system, a file that is no database), naming the file ``db``; None for any other error."""
    e = _sqlite_error(exc)
    if e is None:
        return None
    code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    folder = Path(db).expanduser().absolute().parent
    if code == _SQLITE_FULL or "database or disk is full" in text or (code == _SQLITE_IOERR and disk_full(folder)):
        return StorageError(f"no space left on device at {folder} (the study database {db}); {_RESUME}")
    if code == _SQLITE_READONLY or "readonly database" in text:
        return StorageError(f"the study database {db} is read-only ({_why_unwritable(db)}); a search needs it "
                            "writable: pass --storage with a writable URL (pareto, export and dashboard only read)")
    if code == _SQLITE_IOERR and not _writable(folder):
        return StorageError(f"cannot write the study database {db}: {_why_unwritable(db)}")
    if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT) or "not a database" in text or "malformed" in text:
        return StorageError(f"cannot open the SQLite database {db}: it is not a valid nasconv/Optuna database: {text}")
    return None


def _writable(path: Path) -> bool:
    try:
        return not (os.statvfs(path).f_flag & os.ST_RDONLY) and os.access(path, os.W_OK)
    except OSError:
        return False


def _why_unwritable(db: str) -> str:
    path = Path(db).expanduser().absolute()
    for p in (path, path.parent):
        try:
            if os.statvfs(p).f_flag & os.ST_RDONLY:
                return f"read-only file system at {p}"
        except OSError:
            continue
        if not os.access(p, os.W_OK):
            return f"permission denied at {p}"
    return "read-only file"


def translate_errors(engine: sa.engine.Engine, db: str) -> None:
    """Raise :func:`database_problem`'s one line instead of SQLAlchemy's (and Optuna's) wrapping
    of it, wherever on ``engine`` a statement, a commit or a connection fails."""

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(ctx: Any) -> None:
        problem = database_problem(ctx.original_exception, db)
        if problem is not None:
            raise problem


def sqlite_file(url: sa.engine.URL) -> str | None:
    """The database file of a SQLite URL; None for another database or an in-memory one."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" \
            or url.database.startswith("file:"):
        return None
    return url.database


def readonly_sqlite_kwargs(url: sa.engine.URL) -> dict[str, Any]:
    """Engine arguments that open an existing SQLite file read-only and create nothing (no folder,
    no file, no -wal/-shm where the folder is read-only); :class:`StorageError` for a missing
    file or one that is no database."""
    db = sqlite_file(url)
    if db is None:
        return _engine_kwargs(url)
    path = Path(db).expanduser().absolute()
    if not path.is_file():
        raise StorageError(f"no database at {path}" + ("" if path.parent.is_dir() else
                                                      f" (the folder {path.parent} does not exist)"))
    base = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    # mode=ro reads the -wal of a live database; a WAL database on read-only media without its
    # -shm file opens only as immutable (nobody can be writing to it there).
    last: Exception | None = None
    wal = path.with_name(path.name + "-wal")
    for uri in (base, base + "&immutable=1"):
        if uri.endswith("immutable=1") and wal.is_file() and wal.stat().st_size > 0:
            # immutable would read the database without the commits in its -wal file
            raise StorageError(f"cannot read the study database {path} here: its last commits are in {wal.name}, "
                               f"which needs its -shm file beside it ({_why_unwritable(db)}); copy the database "
                               "with its -wal and -shm files, or open it once where it is writable")
        try:
            con = sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_S)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                con.close()
        except sqlite3.Error as exc:
            last = exc
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
                break
            continue

        def connect(uri: str = uri) -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_S, check_same_thread=False)

        return {"creator": connect}
    assert last is not None
    if is_database_locked(last):
        raise locked_error(url.render_as_string())
    raise database_problem(last, db) or StorageError(f"cannot read the study database {path}: {_one_line(last)}")


def _prepare_sqlite(url: sa.engine.URL) -> None:
    db = url.database
    if not db or db == ":memory:":
        return
    parent = Path(db).expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the studies folder {parent}: {os_problem(exc, parent)}") from None
    if not os.access(parent, os.W_OK) or not _writable(parent):
        raise StorageError(f"the studies folder {parent} is not writable ({_why_unwritable(db)}); pass --storage "
                           "with another URL (pareto, export and dashboard can read a database there)")
    # Write-ahead logging: a commit appends to the log instead of rewriting pages and syncing
    # twice, and readers (optuna-dashboard, `nasconv pareto`) no longer block the driver. The
    # mode is stored in the file, so every later connection, nasconv's or not, uses it.
    # Switching the mode takes the whole file: drivers opening a new database at the same moment
    # get "database is locked" at once (SQLite's busy wait does not cover it), so it is retried.
    give_up = time.monotonic() + SQLITE_TIMEOUT_S
    while True:
        try:
            con = sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S)
            try:
                if str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    con.execute("PRAGMA journal_mode=WAL").fetchone()
            finally:
                con.close()
            return
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc) and time.monotonic() < give_up:
                time.sleep(random.uniform(0.02, 0.2))
                continue
            if "locked" in str(exc):
                raise locked_error(url.render_as_string()) from None
            raise database_problem(exc, db) or StorageError(f"cannot open the SQLite database {db}: {exc}") from None


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
        f"{SQLITE_TIMEOUT_S} s; SQLite suits a few drivers on one machine: for more, or drivers on several "
        "machines, use PostgreSQL (--storage postgresql+psycopg://user@host:5432/db)")


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}"
