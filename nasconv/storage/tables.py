"""nasconv's own tables beside Optuna's in the study database: evaluation cache, front snapshots,
study attributes that the first driver decides."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from nasconv.errors import StorageError
from nasconv.storage.database import (
    _engine_kwargs,
    _one_line,
    _sqlite_connection_settings,
    _while_racing,
    database_problem,
    is_database_locked,
    locked_error,
    parse_url,
    safe_url,
    sqlite_file,
    translate_errors,
)


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


class NasconvTables:
    """nasconv's own tables (evaluation cache, front snapshots) beside Optuna's.

    ``readonly``: create nothing (``engine_kwargs`` then open the database read-only); a table
    that a plain Optuna database lacks reads as empty.
    """

    def __init__(self, url: str, *, readonly: bool = False, engine_kwargs: dict[str, Any] | None = None) -> None:
        parsed = parse_url(url)
        self.engine = sa.create_engine(parsed, **(engine_kwargs if engine_kwargs is not None
                                                   else _engine_kwargs(parsed)))
        db = sqlite_file(parsed)
        if db is not None:
            translate_errors(self.engine, db)
        if parsed.get_backend_name() == "sqlite" and not readonly:
            _sqlite_connection_settings(self.engine)
        self._missing: set[str] = set()
        try:
            if readonly:
                present = set(sa.inspect(self.engine).get_table_names())
                self._missing = {t for t in Base.metadata.tables if t not in present}
            else:
                _while_racing(lambda: Base.metadata.create_all(self.engine))
        except StorageError:
            self.engine.dispose()
            raise
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            if is_database_locked(exc):
                raise locked_error(url) from None
            problem = database_problem(exc, db) if db is not None else None
            raise (problem or StorageError(f"cannot open storage {safe_url(url)}: {_one_line(exc)}")) from None

    def get_cached(self, settings_key: str, arch_hash: str) -> dict[str, Any] | None:
        if EvalCacheRow.__tablename__ in self._missing:
            return None
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
        if FrontSnapshotRow.__tablename__ in self._missing:
            return []
        with orm.Session(self.engine) as s:
            rows = s.scalars(sa.select(FrontSnapshotRow).where(FrontSnapshotRow.study_name == study_name)
                             .order_by(FrontSnapshotRow.id)).all()
            return [FrontSnapshot(r.trial_number, r.n_complete, json.loads(r.front_trials_json), r.hypervolume)
                    for r in rows]

    def last_snapshot(self, study_name: str) -> FrontSnapshot | None:
        if FrontSnapshotRow.__tablename__ in self._missing:
            return None
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
        if EvalCacheRow.__tablename__ in self._missing:
            return 0
        with orm.Session(self.engine) as s:
            return int(s.scalar(sa.select(sa.func.count()).select_from(EvalCacheRow)) or 0)

    def dispose(self) -> None:
        self.engine.dispose()
