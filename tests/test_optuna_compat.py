"""nasconv._optuna: each wrapper of a private Optuna API, pinned to what it returns."""

from __future__ import annotations

import datetime as dt

import numpy as np
import optuna
import pytest

from nasconv import _optuna
from nasconv._optuna import set_user_attrs
from nasconv.storage import open_storage

ATTRS = {"arch": {"stages": [{"op": "tbc", "hyper": {"blocks": 4}}]}, "macs": 4_089_184_256, "ratio": 0.25,
         "ok": True, "none": None, "name": "résumé ✓", "list": [1, 2.5, "x"]}


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    return request.getfixturevalue("postgres_url")


def _study(url: str, **kw) -> optuna.Study:
    storage, tables = open_storage(url, heartbeat=False)
    tables.dispose()
    return optuna.create_study(study_name="s", storage=storage, load_if_exists=True, **kw)


def test_set_user_attrs_round_trip_and_overwrite(storage_url):
    study = _study(storage_url)
    trial = study.ask()
    trial.set_user_attr("macs", 1)  # overwritten below
    trial.set_user_attr("kept", "yes")
    set_user_attrs(trial, ATTRS)
    assert trial.user_attrs == {**ATTRS, "kept": "yes"}
    study.tell(trial, 1.0)
    # a fresh connection reads what the one transaction wrote
    stored = _study(storage_url).trials[0].user_attrs
    assert stored == {**ATTRS, "kept": "yes"}


def test_set_user_attrs_on_a_finished_trial_raises_and_writes_nothing(storage_url):
    study = _study(storage_url)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(trial, {"late": 1})
    assert "late" not in _study(storage_url).trials[0].user_attrs


def test_set_user_attrs_falls_back_on_other_storages():
    study = optuna.create_study()  # in-memory
    trial = study.ask()
    set_user_attrs(trial, {"a": 1, "b": [2]})
    assert study.trials[0].user_attrs == {"a": 1, "b": [2]}


def test_ids_are_the_storage_ids(tmp_path):
    study = _study(f"sqlite:///{tmp_path}/s.db")
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    assert _optuna.study_id(study) == study._storage.get_study_id_from_name("s")
    assert _optuna.trial_id(trial) == _optuna.trial_id(frozen)
    assert study._storage.get_trial(_optuna.trial_id(trial)).number == 0


def test_stale_trial_ids_are_the_running_trials_without_a_recent_heartbeat(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="s", storage=storage)
    old, fresh, done = study.ask(), study.ask(), study.ask()
    for t in (old, fresh, done):
        storage.record_heartbeat(_optuna.trial_id(t))
    study.tell(done, 1.0)
    # age one heartbeat beyond the grace period, in the table Optuna reads
    from optuna.storages._rdb import models
    with storage.scoped_session() as session:
        row = session.query(models.TrialHeartbeatModel).filter_by(trial_id=_optuna.trial_id(old)).one()
        row.heartbeat = row.heartbeat - dt.timedelta(seconds=60)
        session.commit()
    assert _optuna.stale_trial_ids(storage, study) == {_optuna.trial_id(old)}
    assert _optuna.stale_trial_ids(optuna.storages.InMemoryStorage(), study) == set()


def test_feasible_pareto_front_is_best_trials_with_constraints():
    study = optuna.create_study(directions=["maximize", "minimize"])
    rows = [((0.9, 10.0), [0.0]), ((0.8, 5.0), [-1.0]), ((0.95, 4.0), [1.0]),  # the best one is infeasible
            ((0.7, 6.0), [0.0]), ((0.85, 5.0), [0.0])]
    for values, c in rows:
        t = study.ask()
        t.set_constraint("budget", c[0])
        study.tell(t, values)
    front = _optuna.feasible_pareto_front(study.get_trials(), study.directions)
    assert sorted(t.number for t in front) == sorted(t.number for t in study.best_trials) == [0, 4]
    unconstrained = optuna.create_study(directions=["maximize", "minimize"])
    for values, _ in rows:
        unconstrained.add_trial(optuna.trial.create_trial(values=list(values)))
    assert [t.number for t in _optuna.feasible_pareto_front(unconstrained.get_trials(),
                                                            unconstrained.directions)] == [2]


def test_hypervolume_of_a_known_front():
    # two points of a 2-D minimisation, reference (3, 3): 2 + 2 - 1 (their overlap)
    assert _optuna.hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([3.0, 3.0])) == pytest.approx(3.0)
    assert _optuna.hypervolume(np.array([[1.0, 1.0, 1.0]]), np.array([2.0, 3.0, 4.0])) == pytest.approx(6.0)


def test_annotate_finished_trial_adds_attributes_and_changes_nothing_else(storage_url):
    study = _study(storage_url, directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 2.0), n_trials=1)
    before = study.trials[0]
    assert _optuna.annotate_finished_trial(study._storage, _optuna.trial_id(before), {"rung1": {"accuracy": 0.5},
                                                                                       "highest_rung": 1})
    after = optuna.load_study(study_name="s", storage=storage_url).trials[0]
    assert after.user_attrs == {**before.user_attrs, "rung1": {"accuracy": 0.5}, "highest_rung": 1}
    assert (after.state, after.values, after.params) == (before.state, before.values, before.params)
    assert not _optuna.annotate_finished_trial(optuna.storages.InMemoryStorage(), 0, {"a": 1})


def test_nondomination_rank_with_and_without_penalties():
    losses = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    assert _optuna.nondomination_rank(losses).tolist() == [0, 0, 1, 2]
    # an infeasible row comes after every feasible one, whatever its values
    assert _optuna.nondomination_rank(losses, np.array([1.0, 0.0, 0.0, 0.0])).tolist()[0] > 2


def test_storage_of_opens_another_study_beside_it(tmp_path):
    study = _study(f"sqlite:///{tmp_path}/s.db")
    other = optuna.create_study(study_name="beside", storage=_optuna.storage_of(study))
    other.add_trial(optuna.trial.create_trial(value=1.0))
    assert _optuna.storage_of(study).get_n_trials(_optuna.storage_of(study).get_study_id_from_name("beside")) == 1


def test_count_trials_counts_by_state(storage_url):
    study = _study(storage_url)
    for v in (1.0, 2.0):
        study.add_trial(optuna.trial.create_trial(value=v))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    sid = _optuna.study_id(study)
    storage = _optuna.storage_of(study)
    assert _optuna.count_trials(storage, sid, optuna.trial.TrialState.COMPLETE) == 2
    assert _optuna.count_trials(storage, sid, optuna.trial.TrialState.FAIL) == 1
    memory = optuna.create_study()  # not an RDB storage: Optuna's own count
    memory.add_trial(optuna.trial.create_trial(value=1.0))
    assert _optuna.count_trials(_optuna.storage_of(memory), _optuna.study_id(memory),
                                optuna.trial.TrialState.COMPLETE) == 1
