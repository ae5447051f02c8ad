"""nasconv's own tables beside Optuna's in the study database: evaluation cache, front snapshots,
study attributes that the first driver decides, the results of promoted (multi-fidelity) and
repeated evaluations, and the per-device latency lookup tables (read and written by
:mod:`nasconv.latency`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Callable

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
    #: the rung the front was built at (multi-fidelity); None in databases written before rungs
    rung: orm.Mapped[int | None] = orm.mapped_column(sa.Integer, nullable=True)


class RungResultRow(Base):
    """One evaluation of a trial's architecture beyond the one told to Optuna: at a higher rung
    (a promotion) or with another seed (``repeat`` >= 1). Rung 0, repeat 0 is the trial itself.

    A row without values is a claim: the driver ``claimed_by`` is evaluating it. The primary key
    makes a result unique, so a promotion evaluated twice (a driver that died after the result
    was cached, two drivers racing) is stored once."""

    __tablename__ = "nasconv_rung_results"
    study_name: orm.Mapped[str] = orm.mapped_column(sa.String(512), primary_key=True)
    trial_number: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True)
    rung: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True)
    repeat: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True)
    arch_hash: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    claimed_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(256), nullable=True)
    values_json: orm.Mapped[str | None] = orm.mapped_column(sa.Text, nullable=True)
    metrics_json: orm.Mapped[str | None] = orm.mapped_column(sa.Text, nullable=True)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(sa.DateTime)


class StudyLockRow(Base):
    """One row per study on a server database, locked (``SELECT ... FOR UPDATE``) by a driver
    while it counts the study's trials and asks a new one (:mod:`nasconv.storage.locks`)."""

    __tablename__ = "nasconv_study_locks"
    study_name: orm.Mapped[str] = orm.mapped_column(sa.String(512), primary_key=True)


class StudyAttrRow(Base):
    """A study attribute that the first driver to write it decides (e.g. the hypervolume
    reference point): concurrent drivers read the winner's value instead of overwriting it."""

    __tablename__ = "nasconv_study_attrs"
    study_name: orm.Mapped[str] = orm.mapped_column(sa.String(512), primary_key=True)
    key: orm.Mapped[str] = orm.mapped_column(sa.String(128), primary_key=True)
    value_json: orm.Mapped[str] = orm.mapped_column(sa.Text)


class _DeviceSetting:
    """The key columns of a latency table: a latency is only comparable within one setting."""

    device_name: orm.Mapped[str] = orm.mapped_column(sa.String(256), primary_key=True)
    torch_version: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    threads: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True)
    batch: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True)
    precision: orm.Mapped[str] = orm.mapped_column(sa.String(16), primary_key=True)


class LatencyBlockRow(_DeviceSetting, Base):
    """One part's (stem, block or head) measured latency on one device setting: the per-device
    lookup table of :mod:`nasconv.latency`."""

    __tablename__ = "nasconv_latency_blocks"
    block_key: orm.Mapped[str] = orm.mapped_column(sa.String(512), primary_key=True)
    median_ms: orm.Mapped[float] = orm.mapped_column(sa.Float)
    iqr_ms: orm.Mapped[float] = orm.mapped_column(sa.Float)
    ci_low_ms: orm.Mapped[float] = orm.mapped_column(sa.Float)
    ci_high_ms: orm.Mapped[float] = orm.mapped_column(sa.Float)
    repeats: orm.Mapped[int] = orm.mapped_column(sa.Integer)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(sa.DateTime)


class LatencyCalibrationRow(_DeviceSetting, Base):
    """How a space's block sum maps to measured whole networks on one device setting (a linear
    fit and its residual spread), stored with the lookup table."""

    __tablename__ = "nasconv_latency_calibration"
    space: orm.Mapped[str] = orm.mapped_column(sa.String(256), primary_key=True)
    space_hash: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    calibration_json: orm.Mapped[str] = orm.mapped_column(sa.Text)
    created_at: orm.Mapped[dt.datetime] = orm.mapped_column(sa.DateTime)


@dataclass(frozen=True)
class FrontSnapshot:
    trial_number: int
    n_complete: int
    front_trials: list[int]
    hypervolume: float
    #: the rung the front was built at (None: a flat study, or one written before rungs)
    rung: int | None = None


@dataclass(frozen=True)
class RungResult:
    """A finished promoted or repeated evaluation (:class:`RungResultRow` with values)."""

    trial_number: int
    rung: int
    repeat: int
    arch_hash: str
    values: list[float]
    metrics: dict[str, Any]


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
        self._snapshot_rung = True  # whether the snapshots table has its rung column
        try:
            if readonly:
                present = set(sa.inspect(self.engine).get_table_names())
                self._missing = {t for t in Base.metadata.tables if t not in present}
                if FrontSnapshotRow.__tablename__ in present:
                    self._snapshot_rung = "rung" in {c["name"] for c in sa.inspect(self.engine).get_columns(
                        FrontSnapshotRow.__tablename__)}
            else:
                _while_racing(lambda: Base.metadata.create_all(self.engine))
                _while_racing(self._add_missing_columns)
        except StorageError:
            self.engine.dispose()
            raise
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            if is_database_locked(exc):
                raise locked_error(url) from None
            problem = database_problem(exc, db) if db is not None else None
            raise (problem or StorageError(f"cannot open storage {safe_url(url)}: {_one_line(exc)}")) from None

    def _add_missing_columns(self) -> None:
        """Columns added since a table was first created (``create_all`` adds tables, not columns):
        a database written by an earlier version gains them, all nullable."""
        insp = sa.inspect(self.engine)
        have = {c["name"] for c in insp.get_columns(FrontSnapshotRow.__tablename__)}
        if "rung" not in have:
            with self.engine.begin() as conn:
                try:
                    conn.execute(sa.text(f"ALTER TABLE {FrontSnapshotRow.__tablename__} ADD COLUMN rung INTEGER"))
                except sa.exc.SQLAlchemyError:  # another driver added it a moment ago
                    if "rung" not in {c["name"] for c in sa.inspect(self.engine).get_columns(
                            FrontSnapshotRow.__tablename__)}:
                        raise

    def lacks(self, table: str) -> bool:
        """Whether a read-only database has no ``table`` (a nasconv table it was made without)."""
        return table in self._missing

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
                                   rung=snap.rung, created_at=_now()))
            s.commit()

    def snapshots(self, study_name: str) -> list[FrontSnapshot]:
        if FrontSnapshotRow.__tablename__ in self._missing:
            return []
        with orm.Session(self.engine) as s:
            rows = s.execute(sa.select(*self._snapshot_columns()).where(FrontSnapshotRow.study_name == study_name)
                             .order_by(FrontSnapshotRow.id)).all()
            return [_snapshot(r) for r in rows]

    def last_snapshot(self, study_name: str) -> FrontSnapshot | None:
        if FrontSnapshotRow.__tablename__ in self._missing:
            return None
        with orm.Session(self.engine) as s:
            r = s.execute(sa.select(*self._snapshot_columns()).where(FrontSnapshotRow.study_name == study_name)
                          .order_by(FrontSnapshotRow.id.desc()).limit(1)).first()
            return _snapshot(r) if r else None

    def _snapshot_columns(self) -> list[Any]:
        c = FrontSnapshotRow
        return [c.trial_number, c.n_complete, c.front_trials_json, c.hypervolume] + ([c.rung] if self._snapshot_rung
                                                                                    else [])

    def forget_study(self, study_name: str) -> None:
        """Drop a study's snapshots and attributes (after ``optuna.delete_study``: a new study
        of that name starts its history afresh); the evaluation cache is kept."""
        with orm.Session(self.engine) as s:
            s.execute(sa.delete(FrontSnapshotRow).where(FrontSnapshotRow.study_name == study_name))
            s.execute(sa.delete(StudyAttrRow).where(StudyAttrRow.study_name == study_name))
            s.execute(sa.delete(RungResultRow).where(RungResultRow.study_name == study_name))
            s.execute(sa.delete(StudyLockRow).where(StudyLockRow.study_name == study_name))
            s.commit()

    def cache_size(self) -> int:
        if EvalCacheRow.__tablename__ in self._missing:
            return 0
        with orm.Session(self.engine) as s:
            return int(s.scalar(sa.select(sa.func.count()).select_from(EvalCacheRow)) or 0)

    # --- promoted and repeated evaluations ----------------------------------------------------
    def claim_rung(self, study_name: str, trial_number: int, rung: int, repeat: int, arch_hash: str,
                   driver: str, *, dead: Callable[[str], bool]) -> bool:
        """Claim one promotion (or repeat) for ``driver``; False when it is done already or held by
        a driver that is not ``dead`` (a dead driver's claim is taken over: by one driver only,
        however many try at once).

        Each step is one atomic statement, on SQLite (where ``FOR UPDATE`` is ignored) as on a
        server: the insert of a new claim (the primary key lets one of several through), and the
        take-over, an update conditional on the claim being still the dead driver's."""
        key = (study_name, trial_number, rung, repeat)
        with orm.Session(self.engine) as s:
            s.add(RungResultRow(study_name=study_name, trial_number=trial_number, rung=rung, repeat=repeat,
                                arch_hash=arch_hash, claimed_by=driver, created_at=_now()))
            try:
                s.commit()
                return True
            except sa.exc.IntegrityError:
                s.rollback()
            row = s.get(RungResultRow, key)
            if row is None or row.values_json is not None or not (row.claimed_by is None or dead(row.claimed_by)):
                return False
            holder = RungResultRow.claimed_by
            taken = s.execute(sa.update(RungResultRow).where(
                *_rung_key(study_name, trial_number, rung, repeat), RungResultRow.values_json.is_(None),
                holder.is_(None) if row.claimed_by is None else holder == row.claimed_by).values(claimed_by=driver))
            s.commit()
            return taken.rowcount == 1

    def record_rung(self, study_name: str, trial_number: int, rung: int, repeat: int, arch_hash: str,
                    values: list[float], metrics: dict[str, Any]) -> bool:
        """Store a finished promotion or repeat; False (nothing changed) when it was stored already.

        Atomic on SQLite as on a server: the claim becomes the result in one update conditional
        on it having none yet (of two drivers recording the same one, one gets through)."""
        key = (study_name, trial_number, rung, repeat)
        result = {"values_json": json.dumps(values), "metrics_json": json.dumps(metrics, sort_keys=True),
                  "claimed_by": None}
        with orm.Session(self.engine) as s:
            done = s.execute(sa.update(RungResultRow).where(
                *_rung_key(study_name, trial_number, rung, repeat), RungResultRow.values_json.is_(None))
                .values(**result))
            if done.rowcount == 1:
                s.commit()
                return True
            s.rollback()
            if s.get(RungResultRow, key) is not None:
                return False  # recorded already
            s.add(RungResultRow(study_name=study_name, trial_number=trial_number, rung=rung, repeat=repeat,
                                arch_hash=arch_hash, created_at=_now(), **result))
            try:
                s.commit()
            except sa.exc.IntegrityError:  # inserted by another driver in between: theirs holds
                s.rollback()
                return False
            return True

    def release_claims(self, study_name: str, driver: str) -> None:
        """Drop ``driver``'s claims that have no result (a driver that stops)."""
        with orm.Session(self.engine) as s:
            s.execute(sa.delete(RungResultRow).where(RungResultRow.study_name == study_name,
                                                     RungResultRow.claimed_by == driver,
                                                     RungResultRow.values_json.is_(None)))
            s.commit()

    def rung_results(self, study_name: str) -> list[RungResult]:
        """The study's finished promotions and repeats, in (trial, rung, repeat) order."""
        if RungResultRow.__tablename__ in self._missing:
            return []
        with orm.Session(self.engine) as s:
            rows = s.scalars(sa.select(RungResultRow).where(RungResultRow.study_name == study_name,
                                                            RungResultRow.values_json.is_not(None))
                             .order_by(RungResultRow.trial_number, RungResultRow.rung, RungResultRow.repeat)).all()
            return [RungResult(r.trial_number, r.rung, r.repeat, r.arch_hash, json.loads(r.values_json or "[]"),
                               json.loads(r.metrics_json or "{}")) for r in rows]

    def rung_claims(self, study_name: str) -> list[tuple[int, int, int, str | None]]:
        """(trial, rung, repeat, driver) of each promotion or repeat under way."""
        if RungResultRow.__tablename__ in self._missing:
            return []
        with orm.Session(self.engine) as s:
            rows = s.execute(sa.select(RungResultRow.trial_number, RungResultRow.rung, RungResultRow.repeat,
                                       RungResultRow.claimed_by)
                             .where(RungResultRow.study_name == study_name, RungResultRow.values_json.is_(None)))
            return [tuple(r) for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()


def _rung_key(study_name: str, trial_number: int, rung: int, repeat: int) -> tuple[Any, ...]:
    c = RungResultRow
    return c.study_name == study_name, c.trial_number == trial_number, c.rung == rung, c.repeat == repeat


def _snapshot(r: Any) -> FrontSnapshot:
    return FrontSnapshot(r.trial_number, r.n_complete, json.loads(r.front_trials_json), r.hypervolume,
                         r.rung if len(r) > 4 else None)
