"""Study storage: Optuna's RDB storage plus nasconv's own tables in the same database.

``open_storage(url)`` gives an ``optuna.storages.RDBStorage`` (with heartbeats, so that trials
of a driver that died can be failed) and :class:`NasconvTables` for the evaluation cache, the
Pareto-front snapshots and the study attributes the first driver decides. Any SQLAlchemy URL
works: ``sqlite:///studies/nasconv.db`` by default (one driver per file; a second one waits for
the first's writes), ``postgresql+psycopg://user@host/db`` for several drivers and clusters.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from sqlalchemy import orm

from nasconv.errors import StorageError

DEFAULT_STORAGE = "sqlite:///studies/nasconv.db"
#: seconds between a driver's heartbeats for its running trials, and how long without one
#: before another driver may fail them
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 40
#: how long an SQLite writer waits for another process's write lock before "database is locked"
SQLITE_TIMEOUT_S = 60


class Base(orm.DeclarativeBase):
    pass


class EvalCacheRow(Base):
    """One evaluation result, keyed by evaluation settings and architecture hash."""

    __tablename__ = "nasconv_eval_cache"
    settings_key: orm.Mapped[str] = orm.mapped_column(sa.String(32), primary_key=True)
    arch_hash: orm.Mapped[str] = orm.mapped_column(sa.String(32), primary_key=True)
    space: orm.Mapped[str] = orm.mapped_column(sa.String(256))
    metrics_json: orm.Mapped[str] = orm.mapped_column(sa.Text)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(sa.DateTime)


class FrontSnapshotRow(Base):
    """The Pareto front of a study after one of its trials completed."""

    __tablename__ = "nasconv_front_snapshots"
    id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    study_name: orm.Mapped[str] = orm.mapped_column(sa.String(512), index=True)
    trial_number: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    n_complete: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    front_trials_json: orm.Mapped[str] = orm.mapped_column(sa.Text)
    hypervolume: orm.Mapped[float] = orm.mapped_column(sa.Float)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(sa.DateTime)


class StudyAttrRow(Base):
    """A study attribute that the first driver to write it decides (e.g. the hypervolume
    reference point): concurrent drivers read the winner's value instead of overwriting it."""

    __tablename__ = "nasconv_study_attrs"
    study_name: orm.Mapped[str] = orm.mapped_column(sa.String(512), primary_key=True)
    key: orm.Mapped[str] = orm.mapped_column(sa.String(128), primary_key=True)
    value_json: orm.Mapped[str] = orm.mapped_column(sa.Text)


@dataclass(frozen=True)
class FrontSnapshot:
    trial_number: int
    n_complete: int
    front_trials: list[int]
    hypervolume: float


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


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


class NasconvTables:
    """nasconv's own tables (evaluation cache, front snapshots) beside Optuna's."""

    def __init__(self, url: str) -> None:
        parsed = parse_url(url)
        self.engine = sa.create_engine(parsed, **_engine_kwargs(parsed))
        if parsed.get_backend_name() == "sqlite":
            _sqlite_connection_settings(self.engine)
        try:
            _while_racing(lambda: Base.metadata.create_all(self.engine))
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            if is_database_locked(exc):
                raise locked_error(url) from None
            raise StorageError(f"cannot open storage {safe_url(url)}: {_one_line(exc)}") from None

    def get_cached(self, settings_key: str, arch_hash: str) -> dict[str, Any] | None:
        with orm.Session(self.engine) as s:
            row = s.get(EvalCacheRow, (settings_key, arch_hash))
            return json.loads(row.metrics_json) if row else None

    def put_cached(self, settings_key: str, arch_hash: str, space: str, metrics: dict[str, Any]) -> None:
        with orm.Session(self.engine) as s:
            s.add(EvalCacheRow(settings_key=settings_key, arch_hash=arch_hash, space=space,
                               metrics_json=json.dumps(metrics, sort_keys=True), created_at=_now()))
            try:
                s.commit()
            except sa.exc.IntegrityError:  # another driver cached the same evaluation first
                s.rollback()

    def setdefault(self, study_name: str, key: str, value: Any) -> Any:
        """Store ``value`` unless the study already has one for ``key``; the stored value either way."""
        with orm.Session(self.engine) as s:
            s.add(StudyAttrRow(study_name=study_name, key=key, value_json=json.dumps(value)))
            try:
                s.commit()
                return value
            except sa.exc.IntegrityError:  # another driver wrote it first: theirs holds
                s.rollback()
            row = s.get(StudyAttrRow, (study_name, key))
            return json.loads(row.value_json) if row else value

    def add_snapshot(self, study_name: str, snap: FrontSnapshot) -> None:
        with orm.Session(self.engine) as s:
            s.add(FrontSnapshotRow(study_name=study_name, trial_number=snap.trial_number, n_complete=snap.n_complete,
                                   front_trials_json=json.dumps(snap.front_trials), hypervolume=snap.hypervolume,
                                   created_at=_now()))
            s.commit()

    def snapshots(self, study_name: str) -> list[FrontSnapshot]:
        with orm.Session(self.engine) as s:
            rows = s.scalars(sa.select(FrontSnapshotRow).where(FrontSnapshotRow.study_name == study_name)
                             .order_by(FrontSnapshotRow.id)).all()
            return [FrontSnapshot(r.trial_number, r.n_complete, json.loads(r.front_trials_json), r.hypervolume)
                    for r in rows]

    def last_snapshot(self, study_name: str) -> FrontSnapshot | None:
        with orm.Session(self.engine) as s:
            r = s.scalars(sa.select(FrontSnapshotRow).where(FrontSnapshotRow.study_name == study_name)
                          .order_by(FrontSnapshotRow.id.desc()).limit(1)).first()
            return FrontSnapshot(r.trial_number, r.n_complete, json.loads(r.front_trials_json), r.hypervolume) \
                if r else None

    def forget_study(self, study_name: str) -> None:
        """Drop a study's snapshots and attributes (after ``optuna.delete_study``: a new study
        of that name starts its history afresh); the evaluation cache is kept."""
        with orm.Session(self.engine) as s:
            s.execute(sa.delete(FrontSnapshotRow).where(FrontSnapshotRow.study_name == study_name))
            s.execute(sa.delete(StudyAttrRow).where(StudyAttrRow.study_name == study_name))
            s.commit()

    def cache_size(self) -> int:
        with orm.Session(self.engine) as s:
            return int(s.scalar(sa.select(sa.func.count()).select_from(EvalCacheRow)) or 0)

    def dispose(self) -> None:
        self.engine.dispose()


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


def set_user_attrs(trial: optuna.trial.Trial, attrs: dict[str, Any]) -> None:
    """Set several user attributes of a running trial in one transaction.

    ``Trial.set_user_attr`` commits once per attribute, after two queries; a trial's two dozen
    metrics would cost two dozen commits. On an RDB storage (SQLite, PostgreSQL) this checks the
    trial once, as Optuna does (it must still be running), and upserts every attribute in one
    statement into Optuna's own table; on any other storage it falls back to ``set_user_attr``.
    """
    if not attrs:
        return
    backend = getattr(trial.storage, "_backend", trial.storage)
    if not isinstance(backend, optuna.storages.RDBStorage) or backend.engine.name not in ("sqlite", "postgresql"):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    if backend.engine.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    table = models.TrialUserAttributeModel
    rows = [{"trial_id": trial._trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
    stmt = insert(table).values(rows)
    stmt = stmt.on_conflict_do_update(index_elements=[table.trial_id, table.key],
                                      set_={"value_json": stmt.excluded.value_json})
    with _create_scoped_session(backend.scoped_session) as session:
        row = models.TrialModel.find_or_raise_by_id(trial._trial_id, session)
        backend.check_trial_is_updatable(trial._trial_id, row.state)
        session.execute(stmt)
    trial._cached_frozen_trial.user_attrs.update(attrs)
