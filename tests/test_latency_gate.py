"""nasconv.search.latency_gate in a search: a latency budget checked on the prediction before
anything is trained; ``predict`` times only candidates near the limit; ``predict+remeasure`` puts
the front on measurements (timing each promotion); a table is scaled by the device's drift;
``predict`` without a table is one line saying how to make it."""

from __future__ import annotations

import random

import optuna
import pytest
import sqlalchemy as sa

from nasconv.arch import ArchSpec
from nasconv.cost import estimate_cost
from nasconv.evaluate import EvalConfig
from nasconv.latency import Calibration, LatencyTableError, load_model
from nasconv.search import SearchConfig, run_search
from nasconv.storage import NasconvTables
from nasconv.storage.tables import LatencyBlockRow
from nasconv.train import TrainConfig
from tests.latency_helpers import profiled, stored_as_if_faster, tiny_space

ZC = EvalConfig(proxy="synflow", train=TrainConfig(resolution=16), zc_batch=8, latency_threads=1,
                latency_max_time_s=0.2)


def _cfg(tmp_path, **kw):
    base = dict(space=str(tmp_path / "tiny20.yaml"), trials=6, sampler="random", seed=0,
                storage=f"sqlite:///{tmp_path}/s.db", eval=ZC, runner="inline", evaluate_baseline=False,
                progress=False, max_rejections=200)
    base.update(kw)
    return SearchConfig(**base)


class Recording:
    """An evaluator that trains nothing: records what it was asked to time, and times it as 1 ms."""

    def __init__(self):
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, arch, config):
        self.calls.append((arch.arch_hash, config.latency))
        cost = estimate_cost(arch)
        return {"arch_hash": arch.arch_hash, "score": (int(arch.arch_hash, 16) % 1000) / 1000, "params": cost.params,
                "macs": cost.macs, "latency_ms": 1.0 if config.latency else None, "settings_key": "x"}


def _profiled_model(tmp_path, *, networks_faster: float | None):
    """The tiny space's model from real part measurements, with a fixed calibration of 5% spread
    and parts' intervals of +-2%: these tests check what the search does with intervals, whatever
    this machine's noise was. Its whole networks are deleted (no drift check) unless
    ``networks_faster``: stored as if timed that many times faster than the device times them now."""
    space = tiny_space(tmp_path)
    tables, table, setting, _ = profiled(f"sqlite:///{tmp_path}/s.db", space, networks=2)
    table.put_calibration(setting, space.name, space.content_hash, Calibration(0.0, 1.0, 10, 0.05).to_dict())
    with table.engine.begin() as c:
        c.execute(sa.update(LatencyBlockRow).values(ci_low_ms=LatencyBlockRow.median_ms * 0.98,
                                                    ci_high_ms=LatencyBlockRow.median_ms * 1.02))
    model = load_model(table, space, setting)
    if networks_faster is None:
        with table.engine.begin() as c:
            c.execute(sa.delete(LatencyBlockRow).where(LatencyBlockRow.block_key.like("net:%")))
    else:
        stored_as_if_faster(table.engine, space, setting, networks_faster)
    return tables, space, model


@pytest.fixture
def model(tmp_path):
    tables, space, m = _profiled_model(tmp_path, networks_faster=None)
    yield space, m
    tables.dispose()


def test_predict_rejects_over_budget_before_training_and_times_only_near_the_limit(tmp_path, model):
    space, m = model
    lows = sorted(m.predict(space.sample(random.Random(i))).low_ms for i in range(40))
    budget = lows[len(lows) // 2]  # about half the space is over it beyond its interval
    ev = Recording()
    res = run_search(_cfg(tmp_path, budget=f"{budget:.6f}ms", latency="predict"), evaluator=ev)
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path}/s.db")
    rejected = [t for t in study.trials if t.user_attrs.get("status") == "rejected"]
    assert rejected and all("predicted" in t.user_attrs["reject_reason"] for t in rejected)
    trained = {h for h, _ in ev.calls}
    for t in rejected:  # never built nor trained: their interval lies above the budget
        assert t.user_attrs["arch_hash"] not in trained and t.constraints["latency"] > 0
    for t in study.trials:
        a = t.user_attrs
        if a.get("status") != "evaluated":
            continue
        timed = dict(ev.calls)[a["arch_hash"]]
        low, high = a["latency_predicted_ci_ms"]
        assert low <= budget  # trained only when the interval reaches the budget
        assert timed == (high > budget)  # timed only near the limit
        assert a["latency_source"] == ("measured" if timed else "predicted")
        if not timed:
            assert t.values[1] == a["latency_predicted_ms"]
        elif low <= 1.0 <= high:  # the evaluator's timing, inside the interval: kept as it is
            assert t.values[1] == 1.0 and "latency_timings_ms" not in a
        else:  # outside it: timed twice more in the driver, the middle of the three kept
            assert a["latency_timings_ms"][0] == 1.0 and len(a["latency_timings_ms"]) == 3
            assert t.values[1] == a["latency_ms"] == sorted(a["latency_timings_ms"])[1]


def test_predict_and_remeasure_put_the_front_on_measurements(tmp_path, model):
    ev = Recording()
    res = run_search(_cfg(tmp_path, latency="predict+remeasure", objectives=("accuracy", "latency")), evaluator=ev)
    assert all(not timed for _, timed in ev.calls)  # no budget: nothing timed during the search
    assert res.remeasured >= 1 and res.remeasured_over_budget == 0 and len(res.front) == res.remeasured
    for row in res.front:
        assert row["latency_source"] == "remeasured" and row["latency_ms"] > 0
        assert row["latency_predicted_ms"] != row["latency_ms"]


class RecordingTrainer:
    """A training evaluator that trains nothing: an accuracy from the hash, latency 1 ms when timed."""

    def __init__(self):
        self.calls: list[tuple[str, int, bool]] = []

    def __call__(self, arch, config):
        self.calls.append((arch.arch_hash, config.train.train_images, config.latency))
        cost = estimate_cost(arch)
        acc = (int(arch.arch_hash, 16) % 1000) / 1000
        return {"arch_hash": arch.arch_hash, "accuracy": acc, "score": acc,
                "val_images": config.train.val_images or 100, "params": cost.params, "macs": cost.macs,
                "latency_ms": 1.0 if config.latency else None, "settings_key": "x"}


def test_predict_and_remeasure_time_each_promotion(tmp_path, model):
    train = EvalConfig(data="synthetic", train=TrainConfig(resolution=16, train_images=10, val_images=10),
                       latency_threads=1, latency_max_time_s=0.2)
    ev = RecordingTrainer()
    res = run_search(_cfg(tmp_path, latency="predict+remeasure", objectives=("accuracy", "latency"), eval=train,
                          trials=9, rungs=2, eta=3), evaluator=ev)
    assert not any(timed for _, n, timed in ev.calls if n == 10)  # rung 0: the prediction
    promoted = {h for h, n, timed in ev.calls if n == 30}
    assert promoted and all(timed for _, n, timed in ev.calls if n == 30)  # each promotion timed
    tables = NasconvTables(f"sqlite:///{tmp_path}/s.db")
    rows = [r for r in tables.rung_results(res.study_name) if r.rung == 1]
    tables.dispose()
    assert {r.arch_hash for r in rows} == promoted
    for r in rows:  # the measurement is the rung's latency, the prediction kept beside it
        assert r.metrics["latency_source"] == "measured" and r.metrics["latency_ms"] == 1.0
        assert r.metrics["latency_predicted_ms"] != 1.0
    assert res.rung == 1 and res.front and res.remeasured == len(res.front)
    for row in res.front:  # not timed again at the end: the promotion's measurement stands
        assert row["latency_source"] == "measured" and row["latency_ms"] == 1.0


def test_a_search_scales_the_table_by_the_devices_drift_and_says_so(tmp_path, capsys, monkeypatch):
    """The drift check's timings injected (tests.latency_helpers.now_ms): the device times the
    table's networks exactly 4x what the table holds, so the predictions are scaled by exactly 4."""
    from tests.latency_helpers import inject_drift_timings

    inject_drift_timings(monkeypatch)
    tables, space, m = _profiled_model(tmp_path, networks_faster=4.0)  # profiled on a faster day
    tables.dispose()
    res = run_search(_cfg(tmp_path, latency="predict", objectives=("accuracy", "latency")), evaluator=Recording())
    assert "what it did when its latency table was made" in capsys.readouterr().err
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path}/s.db")
    ratios = [t.user_attrs["latency_predicted_ms"] / m.predict(ArchSpec.from_dict(t.user_attrs["arch"])).latency_ms
              for t in study.trials if t.user_attrs.get("status") == "evaluated"]
    assert ratios and all(r == pytest.approx(4.0) for r in ratios)


def test_measure_with_a_table_still_checks_the_budget_first(tmp_path, model):
    space, m = model
    lows = sorted(m.predict(space.sample(random.Random(i))).low_ms for i in range(40))
    ev = Recording()
    res = run_search(_cfg(tmp_path, budget=f"{lows[len(lows) // 2]:.6f}ms"), evaluator=ev)
    assert res.rejected >= 1 and all(timed for _, timed in ev.calls)


def test_predict_without_a_table_says_how_to_make_one(tmp_path):
    tiny_space(tmp_path)
    with pytest.raises(LatencyTableError, match=r"no latency table for space 'tiny20'.*nasconv latency profile "
                                                r"--space tiny20 --threads 1"):
        run_search(_cfg(tmp_path, latency="predict"), evaluator=Recording())


def test_a_timing_outside_its_prediction_is_timed_again_and_the_middle_kept(tmp_path, model):
    """A measurement in another process's burst (here: the evaluator reports 20x the prediction for
    half the architectures) is timed twice more and the middle kept; one inside the prediction's
    interval is kept as it is."""
    space, m = model

    def burst(arch):
        return int(arch.arch_hash, 16) % 2 == 0

    def evaluator(arch, config):
        cost = estimate_cost(arch)
        p = m.predict(arch).latency_ms
        return {"arch_hash": arch.arch_hash, "score": (int(arch.arch_hash, 16) % 1000) / 1000, "params": cost.params,
                "macs": cost.macs, "latency_ms": 20 * p if burst(arch) else p, "settings_key": "x"}

    res = run_search(_cfg(tmp_path, trials=8), evaluator=evaluator)
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path}/s.db")
    seen = set()
    for t in study.trials:
        a = t.user_attrs
        if a.get("status") != "evaluated":
            continue
        arch, p = ArchSpec.from_dict(a["arch"]), a["latency_predicted_ms"]
        seen.add(burst(arch))
        if not burst(arch):
            assert a["latency_ms"] == pytest.approx(p) and "latency_timings_ms" not in a
            continue
        first, *again = a["latency_timings_ms"]
        assert first == pytest.approx(20 * p) and len(again) == 2
        # the middle of the three is a real timing of this network, not the burst's
        assert a["latency_ms"] == sorted(a["latency_timings_ms"])[1] < first
        # sub-ms networks, timed quickly on a shared machine: two timings can differ 2-3.5x (seen here)
        assert all(p / 5 < x < 8 * p for x in again)
    assert seen == {True, False}
