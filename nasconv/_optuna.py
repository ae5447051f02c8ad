"""Every use of Optuna's private API, behind one small module.

Optuna offers no public way to do these; each wrapper names the private call it makes, and
``tests/test_optuna_compat.py`` pins what each returns, so that an Optuna upgrade that moves one
fails there first rather than deep in a search.

May import: Optuna, SQLAlchemy, numpy. Nothing of nasconv.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


def trial_id(trial: optuna.trial.BaseTrial) -> int:
    """The storage's id of a trial (``Trial._trial_id`` / ``FrozenTrial._trial_id``)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study (``Study._study_id``)."""
    return study._study_id


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study was loaded from (``Study._storage``), to open another study beside it."""
    return study._storage


def count_trials(storage: optuna.storages.BaseStorage, study_id: int, state: TrialState) -> int:
    """How many of the study's trials are in ``state``, counted by the database on an RDB storage
    (one ``COUNT`` over ``optuna.storages._rdb.models.TrialModel``, ``_create_scoped_session``):
    Optuna's ``get_n_trials`` reads every trial to count them. Other storages: ``get_n_trials``."""
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return storage.get_n_trials(study_id, state=state)
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func, select

    table = models.TrialModel
    with _create_scoped_session(backend.scoped_session) as session:
        return int(session.execute(select(func.count(table.trial_id)).where(
            table.study_id == study_id, table.state == state)).scalar_one())


def stale_trial_ids(storage: optuna.storages.BaseStorage, study: optuna.Study) -> set[int]:
    """Ids of the study's RUNNING trials whose heartbeat is older than the storage's grace period
    (``RDBStorage._get_stale_trial_ids``); empty for a storage without heartbeats."""
    getter = getattr(storage, "_get_stale_trial_ids", None)
    if getter is None:
        return set()
    return set(getter(study_id(study)))


def feasible_pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """The Pareto-optimal trials among ``trials``, honouring constraints when any trial has them:
    what ``Study.best_trials`` computes, from a list the caller already read
    (``optuna.study._multi_objective._get_pareto_front_trials_by_trials`` with
    ``optuna.study._constrained_optimization._is_constrained_optimization``)."""
    from optuna.study._constrained_optimization import _is_constrained_optimization
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials

    trials = list(trials)
    return list(_get_pareto_front_trials_by_trials(trials, list(directions),
                                                   consider_constraint=_is_constrained_optimization(trials)))


def hypervolume(losses: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume dominated by ``losses`` (rows of minimised objectives, each below
    ``reference``) up to ``reference`` (``optuna._hypervolume.compute_hypervolume``)."""
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(np.asarray(losses, dtype=float), np.asarray(reference, dtype=float)))


def set_user_attrs(trial: optuna.trial.Trial, attrs: dict[str, Any]) -> None:
    """Set several user attributes of a running trial in one transaction.

    ``Trial.set_user_attr`` commits once per attribute, after two queries; a trial's two dozen
    metrics would cost two dozen commits. On an RDB storage (SQLite, PostgreSQL) this checks the
    trial once, as Optuna does (it must still be running), and upserts every attribute in one
    statement into Optuna's own table (``optuna.storages._rdb.models``,
    ``_create_scoped_session``, ``Trial._cached_frozen_trial``); on any other storage it falls
    back to ``set_user_attr``.
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

    with _create_scoped_session(backend.scoped_session) as session:
        row = models.TrialModel.find_or_raise_by_id(trial_id(trial), session)
        backend.check_trial_is_updatable(trial_id(trial), row.state)
        session.execute(_upsert_user_attrs(backend, trial_id(trial), attrs))
    trial._cached_frozen_trial.user_attrs.update(attrs)


def nondomination_rank(losses: np.ndarray, penalty: np.ndarray | None = None) -> np.ndarray:
    """Non-domination rank (0: the front) of rows of minimised objectives, infeasible rows
    (``penalty`` > 0) ranked after every feasible one by their penalty
    (``optuna.study._multi_objective._fast_non_domination_rank``, what NSGA-II sorts by)."""
    from optuna.study._multi_objective import _fast_non_domination_rank

    return np.asarray(_fast_non_domination_rank(np.asarray(losses, dtype=float), penalty=penalty))


def _upsert_user_attrs(backend: optuna.storages.RDBStorage, tid: int, attrs: dict[str, Any]) -> Any:
    from optuna.storages._rdb import models

    if backend.engine.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    table = models.TrialUserAttributeModel
    stmt = insert(table).values([{"trial_id": tid, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()])
    return stmt.on_conflict_do_update(index_elements=[table.trial_id, table.key],
                                      set_={"value_json": stmt.excluded.value_json})


def annotate_finished_trial(storage: optuna.storages.BaseStorage, tid: int, attrs: dict[str, Any]) -> bool:
    """Add user attributes to a trial that has finished (Optuna refuses: a finished trial is
    immutable), for readers such as optuna-dashboard: a promoted candidate's later rung results.
    Writes Optuna's own user-attribute table directly (``optuna.storages._rdb.models``,
    ``_create_scoped_session``); nothing a sampler reads (values, params, constraints) changes.
    False (nothing written) on a storage other than SQLite or PostgreSQL."""
    backend = getattr(storage, "_backend", storage)
    if not attrs or not isinstance(backend, optuna.storages.RDBStorage) or \
            backend.engine.name not in ("sqlite", "postgresql"):
        return False
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session) as session:
        session.execute(_upsert_user_attrs(backend, tid, attrs))
    return True
