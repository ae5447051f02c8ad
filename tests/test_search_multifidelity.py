"""Multi-fidelity search end to end (inline, a brief training on synthetic images): each
architecture one trial told its rung-0 values; promotions (ASHA) and repeats in nasconv's rung
table with the rung in the evaluation-cache key; the front built at the highest rung reached;
pareto, export and snapshots agree; a driver killed between a rung result and its record loses
and duplicates nothing."""

from __future__ import annotations

import collections
import json
import math
import os
import signal
import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from nasconv.cli import main
from nasconv.evaluate import EvalConfig, evaluate
from nasconv.export.study import select_trials
from nasconv.results import at_rungs, study_summary
from nasconv.search import SearchConfig, run_search
from nasconv.storage import NasconvTables, open_study
from nasconv.train import TrainConfig

TINY = EvalConfig(data="synthetic", train=TrainConfig(train_images=40, val_images=40, batch_size=20, resolution=16),
                  latency=False)


def _cfg(storage: str, **kw) -> SearchConfig:
    base = dict(space="resnet20", budget="30mflops", trials=8, sampler="random", seed=1, storage=storage,
                study_name="mf", objectives=("accuracy", "macs"), eval=TINY, runner="inline",
                evaluate_baseline=False, progress=False, rungs=3, eta=2)
    base.update(kw)
    return SearchConfig(**base)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mf")
    storage = f"sqlite:///{tmp}/s.db"
    res = run_search(_cfg(storage, evaluate_baseline=True))
    study, tables = open_study("mf", storage, readonly=True)
    return {"res": res, "storage": storage, "study": study, "tables": tables, "tmp": tmp}


def test_each_architecture_is_one_trial_told_its_rung0_values(searched):
    study = searched["study"]
    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("status") == "evaluated"]
    assert len(done) == 8
    cache = NasconvTables(searched["storage"])
    try:
        for t in done:
            assert t.values == [t.user_attrs["score"], t.user_attrs["macs"]]
            assert t.user_attrs["settings_key"] == TINY.settings_key()
            rung0 = cache.get_cached(TINY.settings_key(), t.user_attrs["arch_hash"])
            assert rung0["accuracy"] == t.user_attrs["accuracy"] and rung0["val_images"] == 40
    finally:
        cache.dispose()


def test_promotions_follow_asha_and_are_stored_once_with_their_rung_settings(searched):
    rows = searched["tables"].rung_results("mf")
    study = searched["study"]
    assert rows, "no promotion happened"
    keys = [(r.trial_number, r.rung, r.repeat) for r in rows]
    assert len(keys) == len(set(keys))
    per_rung = collections.Counter(r.rung for r in rows if r.repeat == 0)
    n0 = len([t for t in study.trials if t.user_attrs.get("status") == "evaluated"])
    # ASHA promotes a candidate while it is in its rung's top 1/eta at that moment (one that later
    # falls out keeps its promotion), so a rung ends with fewer than the one below, not exactly 1/eta
    assert 1 <= per_rung[2] < per_rung[1] < n0
    by = {(r.trial_number, r.rung): r for r in rows}
    for r in rows:
        if r.rung == 2:
            assert (r.trial_number, 1) in by, "promoted to rung 2 without rung 1"
        assert r.metrics["train_images"] == 40 * 2 ** r.rung
        assert r.metrics["val_images"] == (40 if r.rung < 2 else 200)  # the top rung: the whole held-out split
        assert r.values == [r.metrics["score"], r.metrics["macs"]]
        # the rung is in the evaluation-cache key: a promoted result never stands for a cheap one
        assert r.metrics["settings_key"] != TINY.settings_key()
    # the trial's own attributes show its rung results (for optuna-dashboard), read afresh
    fresh = optuna.load_study(study_name="mf", storage=searched["storage"])
    for (n, rung), r in by.items():
        attrs = fresh.trials[n].user_attrs
        assert attrs[f"rung{rung}"]["accuracy"] == r.metrics["accuracy"]
        assert attrs["highest_rung"] == max(rr for nn, rr in by if nn == n)
        assert fresh.trials[n].values == study.trials[n].values  # nothing the sampler reads changed


def test_the_front_stands_at_the_highest_rung_and_every_view_agrees(searched):
    res, study, tables = searched["res"], searched["study"], searched["tables"]
    assert res.rung == 2 and res.rungs == 3
    assert res.front and all(f["rung"] == 2 for f in res.front)
    rows = tables.rung_results("mf")
    top = {r.trial_number for r in rows if r.rung == 2}
    assert {f["trial"] for f in res.front} <= top
    for f in res.front:
        assert f["accuracy"] == next(r.metrics["accuracy"] for r in rows if r.trial_number == f["trial"]
                                     and r.rung == 2)
        assert f["val_images"] == 200 and f["accuracy_ci"][0] <= f["accuracy"] <= f["accuracy_ci"][1]
    views = at_rungs(study.get_trials(states=(TrialState.COMPLETE,)), rows)
    assert sum(res.per_rung.values()) == len(views) and res.per_rung[2] == len(top)
    summary = study_summary(study, tables)
    assert [f["trial"] for f in summary["front"]] == [f["trial"] for f in res.front]
    assert summary["rung"] == 2 and summary["fidelity"] == {"rungs": 3, "eta": 2.0, "lower_val": "scaled"}
    assert [t.number for t in select_trials(study, pareto=True, rungs=rows)] == [f["trial"] for f in res.front]
    best = select_trials(study, best="accuracy", rungs=rows)[0]
    assert best.number in top  # compared at the top rung only
    snaps = tables.snapshots("mf")
    assert snaps[-1].rung == 2 and snaps[-1].front_trials == [f["trial"] for f in res.front]
    assert any(s.rung == 0 for s in snaps)  # the history records the rung the front stood at
    # the baseline is measured where the front stands: at the top rung
    assert res.baseline["val_images"] == 200


def test_pareto_cli_shows_rungs(searched, capsys):
    assert main(["pareto", "--study", "mf", "--storage", searched["storage"]]) == 0
    out = capsys.readouterr().out
    assert "the front stands at rung 2" in out and "rung" in out.splitlines()[3]
    assert main(["pareto", "--study", "mf", "--storage", searched["storage"], "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["rung"] == 2 and all(f["rung"] == 2 for f in js["front"])


def test_repeats_pool_further_seeds_of_the_final_front(tmp_path):
    storage = f"sqlite:///{tmp_path}/r.db"
    res = run_search(_cfg(storage, trials=4, rungs=1, repeats=2, study_name="rep"))
    tables = NasconvTables(storage)
    try:
        rows = tables.rung_results("rep")
    finally:
        tables.dispose()
    assert res.front and all(f["runs"] == 3 for f in res.front)
    for f in res.front:
        mine = [r for r in rows if r.trial_number == f["trial"]]
        assert sorted(r.repeat for r in mine) == [1, 2]
        accs = [f_ for f_ in [r.metrics["accuracy"] for r in mine]]
        study = optuna.load_study(study_name="rep", storage=storage)
        accs.append(study.trials[f["trial"]].user_attrs["accuracy"])
        assert math.isclose(f["accuracy"], sum(accs) / 3) and math.isclose(f["score"], f["accuracy"])
        assert 0 <= f["accuracy_ci"][0] <= f["accuracy"] <= f["accuracy_ci"][1] <= 1  # a t-interval over 3 seeds


def _rows(db):
    with sqlite3.connect(db) as con:
        return sorted(con.execute("SELECT trial_number, rung, repeat, values_json IS NOT NULL "
                                  "FROM nasconv_rung_results").fetchall())


#: conftest's SearchCLI (resnet20 on synthetic images at 16 px) with a brief training and 2 rungs
MF_EXTRA = ("--proxy", "train", "--rungs", "2", "--eta", "2", "--train-images", "40", "--batch-size", "20")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before_rung_record:1", "after_rung_record:1"])
def test_sigkill_between_a_rung_result_and_its_record_loses_and_duplicates_nothing(search_cli, tmp_path, point):
    storage, trials, extra = f"sqlite:///{tmp_path}/s.db", 6, MF_EXTRA
    first = search_cli.run(storage, trials, extra=extra, env=search_cli.env(NASCONV_TEST_CRASH_AT=point))
    assert first.returncode == -signal.SIGKILL, first.stderr
    before = _rows(tmp_path / "s.db")
    if point.startswith("before"):
        assert any(not done for *_, done in before)  # a claim without its result, the result cached
    second = search_cli.run(storage, trials, extra=extra)
    assert second.returncode == 0, second.stderr
    after = _rows(tmp_path / "s.db")
    assert all(done for *_, done in after), "a claim left without its result"
    assert len({r[:3] for r in after}) == len(after)
    assert {r[:3] for r in before if r[3]} <= {r[:3] for r in after}, "a stored rung result was lost"
    # each (architecture, rung) evaluated once over both runs: the cut one came from the cache
    evals = collections.Counter(d for p, d, pid in search_cli.traced("during_eval"))
    study = search_cli.study(storage)
    expected = collections.Counter(t.user_attrs["arch_hash"] for t in study.trials
                                   if t.user_attrs.get("status") == "evaluated")
    for n, rung, repeat, _ in after:
        expected[study.trials[n].user_attrs["arch_hash"]] += 1
    assert evals == expected


@pytest.mark.slow
def test_two_drivers_on_postgres_share_the_promotions(postgres_url, search_cli):
    trials = 8
    env = search_cli.env(NASCONV_TEST_DELAY="during_eval:1")  # the second driver joins a running search
    first = search_cli.start(postgres_url, trials, extra=MF_EXTRA, env=env)
    search_cli.wait_traced("after_ask", 1, first)
    second = search_cli.start(postgres_url, trials, extra=MF_EXTRA, env=env)
    for p in (first, second):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    tables = NasconvTables(postgres_url)
    try:
        rows, claims = tables.rung_results("s"), tables.rung_claims("s")
    finally:
        tables.dispose()
    assert rows and not claims, "every claimed promotion was recorded"
    # each promotion evaluated by one driver only (claims), and recorded once
    promoted = [d for p, d, pid in search_cli.traced("before_rung_record")]
    assert len(promoted) == len(set(promoted)) == len(rows)
    assert len({pid for p, d, pid in search_cli.traced("during_eval")}) == 2, "both drivers evaluated"
    study = search_cli.study(postgres_url)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    summary = study_summary(study, NasconvTables(postgres_url, readonly=True))
    assert summary["rung"] == 1 and summary["front"] and all(f["rung"] == 1 for f in summary["front"])


@pytest.mark.slow
def test_ray_worker_killed_mid_promotion_is_retried_or_recorded_as_failed(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()

    def evaluator(arch, config):
        # The first promoted architecture's worker dies once (Ray runs the task again); the
        # second's on every attempt (retries run out: the promotion is stored as failed, once).
        if config.train.train_images > TINY.train.train_images:
            order = marks / "order"
            seen = order.read_text().split() if order.exists() else []
            if arch.arch_hash not in seen:
                seen.append(arch.arch_hash)
                order.write_text("\n".join(seen))
            with open(marks / arch.arch_hash, "a") as f:
                f.write(f"{os.getpid()}\n")
            attempt = len((marks / arch.arch_hash).read_text().split())
            if seen.index(arch.arch_hash) == 1 or (seen.index(arch.arch_hash) == 0 and attempt == 1):
                os.kill(os.getpid(), signal.SIGKILL)
        return evaluate(arch, config)

    storage = f"sqlite:///{tmp_path}/ray.db"
    res = run_search(_cfg(storage, trials=4, rungs=2, runner="ray", workers=1, cpus_per_worker=1),
                     evaluator=evaluator)
    assert res.evaluated == 4
    first, second = (marks / "order").read_text().split()[:2]
    assert len((marks / first).read_text().split()) == 2 and len((marks / second).read_text().split()) == 3
    tables = NasconvTables(storage)
    try:
        rows, claims = tables.rung_results("mf"), tables.rung_claims("mf")
    finally:
        tables.dispose()
    by = {r.arch_hash: r for r in rows}
    assert by[first].values and not by[second].values and "died" in json.dumps(by[second].metrics).lower()
    assert not claims and len(rows) == len({(r.trial_number, r.rung) for r in rows})
    assert second not in {f["arch_hash"] for f in res.front}


def test_report_of_a_multifidelity_study(searched, tmp_path, capsys):
    """The report counts promotions, compares effects at rung 0 (every candidate's), puts the
    front at its rung, and refreshes each promoted trial's dashboard note to its highest rung."""
    import optuna
    from optuna_dashboard import get_note

    storage = searched["storage"]
    capsys.readouterr()
    assert main(["report", "--study", "mf", "--storage", storage, "--out", str(tmp_path / "mf.html"), "--json",
                 "--artifacts", str(tmp_path / "arts")]) == 0
    rep = json.loads(capsys.readouterr().out)
    rows = searched["tables"].rung_results("mf")
    promoted: dict[int, int] = {}
    for r in rows:
        if r.values and r.rung > 0:
            promoted[r.trial_number] = max(r.rung, promoted.get(r.trial_number, 0))
    assert promoted and rep["counts"]["promoted"] == len(promoted)
    assert rep["front_rung"] == max(promoted.values()) and all(f["rung"] == rep["front_rung"] for f in rep["front"])
    assert rep["effects"]["rung"] == 0 and rep["effects"]["candidates"] == 8
    assert not rep["effects"]["with_baseline"]  # the baseline stands at the top rung: not mixed in
    study = optuna.load_study(study_name="mf", storage=storage)
    for number, rung in promoted.items():
        trial = optuna.trial.Trial(study, study.trials[number]._trial_id)
        assert f"- rung {rung}; device" in get_note(trial)
