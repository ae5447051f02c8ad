"""The lookup table in the study database: one row per part measured on one device setting
(:class:`~nasconv.storage.tables.LatencyBlockRow`) and one calibration per space
(:class:`~nasconv.storage.tables.LatencyCalibrationRow`). A setting is the device's name, the
torch version, the thread count, the batch size and the precision: a table made under one is
never read for another."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable

import sqlalchemy as sa
import torch
from sqlalchemy import orm

from nasconv.budget import MAX_LATENCY_MS
from nasconv.errors import NasconvError
from nasconv.profile import LatencyResult, device_name, resolve_device
from nasconv.storage import DEFAULT_STORAGE, NasconvTables, open_storage, safe_url
from nasconv.storage.tables import LatencyBlockRow, LatencyCalibrationRow

#: the precision latencies are measured in (what the evaluator times: an fp32 forward pass)
PRECISION = "fp32"
#: a stored timing above this (the largest latency a budget may name, 11.6 days) is a corrupt row:
#: read as it is, a sum of such medians overflows (1e308 ms: OverflowError)
MAX_TIMING_MS = MAX_LATENCY_MS
#: a stored repeat count above this is a corrupt row
MAX_REPEATS = 10**9


class LatencyTableError(NasconvError):
    """No usable lookup table: none for this device setting, parts missing, or a corrupt row."""


@dataclass(frozen=True)
class DeviceSetting:
    """What a table is keyed by besides the part: a latency is only comparable within one."""

    device_name: str
    torch_version: str
    threads: int
    batch: int
    precision: str = PRECISION

    def describe(self) -> str:
        return (f"{self.device_name!r}, torch {self.torch_version}, {self.threads} thread(s), batch {self.batch}, "
                f"{self.precision}")

    def differences(self, other: "DeviceSetting") -> list[str]:
        """What differs from ``other``, e.g. ``["threads 2 (here 1)"]``."""
        names = {"device_name": "device", "torch_version": "torch", "threads": "threads", "batch": "batch",
                 "precision": "precision"}
        return [f"{names[f.name]} {getattr(self, f.name)!r} (here {getattr(other, f.name)!r})"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def where(self) -> dict[str, Any]:
        return asdict(self)


def current_setting(device: str = "cpu", *, threads: int | None = None, batch: int = 1) -> DeviceSetting:
    """The setting this process would measure in: the named device (checked), ``threads`` (default:
    torch's current count), ``batch``."""
    dev = resolve_device(device)
    if threads is not None and threads < 1:
        raise NasconvError(f"--threads must be >= 1, got {threads}")
    if batch < 1:
        raise NasconvError(f"--batch must be >= 1, got {batch}")
    return DeviceSetting(device_name(dev), torch.__version__, int(threads or torch.get_num_threads()), int(batch))


def open_tables(url: str, *, readonly: bool = False) -> NasconvTables:
    """nasconv's tables of the study database at ``url`` (created unless ``readonly``)."""
    storage, tables = open_storage(url, heartbeat=False, readonly=readonly)
    storage.engine.dispose()
    return tables


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _match(row: type, setting: DeviceSetting) -> list[Any]:
    return [getattr(row, k) == v for k, v in setting.where().items()]


def row_problem(row: LatencyBlockRow) -> str | None:
    """Why a stored row cannot be used (None when it can): a timing that is missing, not finite,
    negative or above :data:`MAX_TIMING_MS`, an interval that does not hold its median, or a
    repeat count outside [1, :data:`MAX_REPEATS`]."""
    vals = (row.median_ms, row.iqr_ms, row.ci_low_ms, row.ci_high_ms)
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) for v in vals):
        return f"non-finite values {vals}"
    if any(abs(v) > MAX_TIMING_MS for v in vals):
        return f"values {vals} beyond {MAX_TIMING_MS:g} ms"
    if row.median_ms <= 0 or row.iqr_ms < 0 or not row.ci_low_ms <= row.median_ms <= row.ci_high_ms:
        return f"median {row.median_ms!r} ms outside its interval [{row.ci_low_ms!r}, {row.ci_high_ms!r}] or not > 0"
    if not isinstance(row.repeats, int) or isinstance(row.repeats, bool) or not 1 <= row.repeats <= MAX_REPEATS:
        return f"repeats {row.repeats!r}"
    return None


def _out_of_bounds(x: Any) -> Any:
    """The first number in a stored calibration (nested lists and dicts) that is not finite or
    beyond +-:data:`MAX_TIMING_MS` (its timings in ms, its slope and counts all lie well within);
    None when there is none."""
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, list):
        for v in x:
            bad = _out_of_bounds(v)
            if bad is not None:
                return bad
        return None
    if isinstance(x, (int, float)) and not isinstance(x, bool) and not (
            math.isfinite(x) and abs(x) <= MAX_TIMING_MS):
        return x
    return None


@dataclass(frozen=True)
class BlockLatency:
    median_ms: float
    #: half the width of the median's 95% interval
    half_ms: float


class LatencyTable:
    """Reads and writes the lookup table of one database (``tables``: :class:`NasconvTables`)."""

    def __init__(self, tables: NasconvTables, url: str = "") -> None:
        self.engine = tables.engine
        self.url = safe_url(url) if url else "the study database"
        #: what the profile command needs besides the space to write to this database
        self.storage_flag = f" --storage {self.url}" if url and url != DEFAULT_STORAGE else ""
        self.missing = tables.lacks(LatencyBlockRow.__tablename__)

    def _session(self) -> orm.Session:
        return orm.Session(self.engine)

    def good_keys(self, setting: DeviceSetting) -> set[str]:
        """Keys of the setting's usable rows (a corrupt row is measured again by the profiler)."""
        if self.missing:
            return set()
        with self._session() as s:
            rows = s.scalars(sa.select(LatencyBlockRow).where(*_match(LatencyBlockRow, setting))).all()
            return {r.block_key for r in rows if row_problem(r) is None}

    def _store(self, setting: DeviceSetting, key: str, values: dict[str, Any]) -> None:
        """One row's values under ``key``, replacing what is there; committed at once."""
        with self._session() as s:
            row = s.get(LatencyBlockRow, {**setting.where(), "block_key": key})
            if row is None:
                row = LatencyBlockRow(**setting.where(), block_key=key)
                s.add(row)
            for c, v in values.items():
                setattr(row, c, v)
            row.created_at = _now()
            try:
                s.commit()
            except sa.exc.IntegrityError:  # another profiler stored it a moment ago: theirs holds
                s.rollback()

    def _good_rows(self, setting: DeviceSetting, keys: Iterable[str]) -> list[LatencyBlockRow]:
        """The usable stored rows of ``keys`` (detached: their values only)."""
        wanted = list(keys)
        if self.missing or not wanted:
            return []
        with self._session() as s:
            rows = s.scalars(sa.select(LatencyBlockRow).where(
                *_match(LatencyBlockRow, setting), LatencyBlockRow.block_key.in_(wanted))).all()
            s.expunge_all()
        return [r for r in rows if row_problem(r) is None]

    def put(self, setting: DeviceSetting, key: str, res: LatencyResult) -> None:
        """Store one measured part, replacing a corrupt row of that key; committed at once."""
        self._store(setting, key, {"median_ms": float(res.median_ms), "iqr_ms": float(res.iqr_ms),
                                   "ci_low_ms": float(res.ci_low_ms), "ci_high_ms": float(res.ci_high_ms),
                                   "repeats": int(res.repeats)})

    def medians(self, setting: DeviceSetting, keys: Iterable[str]) -> dict[str, float]:
        """The stored medians of those of ``keys`` that have a usable row."""
        return {r.block_key: r.median_ms for r in self._good_rows(setting, keys)}

    def keep_middle(self, setting: DeviceSetting, key: str, round_keys: Iterable[str]) -> None:
        """Store under ``key`` a copy of the row, among ``round_keys``' stored rows, whose median
        is the middle one (of an even number: the faster of the middle two)."""
        good = sorted(self._good_rows(setting, round_keys), key=lambda r: r.median_ms)
        if not good:
            raise LatencyTableError(f"no stored round of {key} to keep")
        mid = good[(len(good) - 1) // 2]
        self._store(setting, key, {c: getattr(mid, c) for c in ("median_ms", "iqr_ms", "ci_low_ms", "ci_high_ms",
                                                                  "repeats")})

    def blocks(self, setting: DeviceSetting, keys: Iterable[str], *, space: str) -> dict[str, BlockLatency]:
        """Every key's latency; :class:`LatencyTableError` naming the missing or corrupt ones."""
        wanted = set(keys)
        with self._session() as s:
            rows = [] if self.missing else s.scalars(
                sa.select(LatencyBlockRow).where(*_match(LatencyBlockRow, setting))).all()
        out: dict[str, BlockLatency] = {}
        for r in rows:
            if r.block_key not in wanted:
                continue
            problem = row_problem(r)
            if problem is not None:
                raise LatencyTableError(f"corrupt row in the latency table ({self.url}): {r.block_key}: {problem}; "
                                        f"`nasconv latency profile --space {space}` measures it again")
            out[r.block_key] = BlockLatency(r.median_ms, (r.ci_high_ms - r.ci_low_ms) / 2)
        absent = sorted(wanted - set(out))
        if absent:
            raise LatencyTableError(
                f"{len(absent)} of the {len(wanted)} parts of space {space!r} are missing from the latency table "
                f"for {setting.describe()} (e.g. {absent[0]}); `nasconv latency profile --space {space} "
                f"--threads {setting.threads} --batch {setting.batch}{self.storage_flag}` measures them (it resumes)")
        return out

    def put_calibration(self, setting: DeviceSetting, space: str, space_hash: str, calibration: dict) -> None:
        with self._session() as s:
            row = s.get(LatencyCalibrationRow, {**setting.where(), "space": space})
            if row is None:
                row = LatencyCalibrationRow(**setting.where(), space=space)
                s.add(row)
            row.space_hash, row.calibration_json, row.created_at = space_hash, json.dumps(calibration), _now()
            s.commit()

    def calibration(self, setting: DeviceSetting, space: str) -> tuple[str, dict[str, Any]] | None:
        """(space hash, calibration) stored for ``space`` under ``setting``; None when there is none."""
        if self.missing:
            return None
        with self._session() as s:
            row = s.get(LatencyCalibrationRow, {**setting.where(), "space": space})
            if row is None:
                return None
            try:
                cal = json.loads(row.calibration_json)
                if not isinstance(cal, dict):
                    raise ValueError("not an object")
                bad = _out_of_bounds(cal)
                if bad is not None:
                    raise ValueError(f"{bad!r} is not a finite number within +-{MAX_TIMING_MS:g}")
            except ValueError as exc:
                raise LatencyTableError(f"corrupt calibration of space {space!r} in the latency table ({self.url}): "
                                        f"{exc}; `nasconv latency profile --space {space} --recalibrate` "
                                        "makes it again") from None
            return row.space_hash, cal

    def settings_for(self, space: str) -> list[DeviceSetting]:
        """The settings a calibration of ``space`` is stored for."""
        if self.missing:
            return []
        c = LatencyCalibrationRow
        with self._session() as s:
            rows = s.execute(sa.select(c.device_name, c.torch_version, c.threads, c.batch, c.precision)
                             .where(c.space == space)).all()
        return [DeviceSetting(*r) for r in rows]


def require_calibration(table: LatencyTable, setting: DeviceSetting, space: str) -> tuple[str, dict[str, Any]]:
    """The space's calibration under ``setting``, or the one line that says why there is none and how
    to make it (naming what differs from the settings a table exists for)."""
    found = table.calibration(setting, space)
    if found is not None:
        return found
    make = (f"`nasconv latency profile --space {space} --threads {setting.threads} --batch {setting.batch}"
            f"{table.storage_flag}`")
    others = table.settings_for(space)
    if others:
        diffs = "; ".join(", ".join(o.differences(setting)) for o in others[:3])
        raise LatencyTableError(f"the latency table of space {space!r} in {table.url} was made for another setting "
                                f"({diffs}); it is refused here; {make} makes one for this one")
    raise LatencyTableError(f"no latency table for space {space!r} on {setting.describe()} in {table.url}; "
                            f"make one with {make}")


__all__ = ["BlockLatency", "DeviceSetting", "LatencyTable", "LatencyTableError", "PRECISION", "current_setting",
           "open_tables", "require_calibration", "row_problem"]
