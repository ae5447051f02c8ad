"""``search --screen oneshot``: a supernet scores the screening study ``<study>.oneshot``; the best by
non-dominated rank are queued into the main study and trained stand-alone; a resume continues the
screen without queueing twice; ``--time`` stops supernet training cleanly; on Ray one actor loads
the supernet once; bad input in one line. A tiny two-stage space on synthetic images, 20 supernet
steps: these check the machinery, benchmarks/oneshot.py the ranking on real images."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from nasconv.cli import main
from nasconv.errors import UsageError
from nasconv.evaluate import EvalConfig
from nasconv.search import SearchConfig, run_search
from nasconv.search.screen import check_screenable, nondominated_ranks, screen_study_name
from nasconv.storage import NasconvTables
from nasconv.train import TrainConfig

TINY_SPACE = {
    "name": "tiny", "resolution": 8, "in_channels": 3, "num_classes": 10, "stem": {"type": "cifar", "width": 4},
    "block": "basic", "choices": ["standard", {"op": "gc", "groups": [2, 4]}, {"op": "dynconv", "experts": [2]}],
    "proxy": {"max_depth": None, "width_factor": 1.0},
    "stages": [{"depth": {"choices": [1, 2], "default": 1}, "width": {"base": 4, "multipliers": [1, 2]}, "stride": 1},
               {"depth": {"choices": [1, 2], "default": 1}, "width": {"base": 8, "multipliers": [1, 2]}, "stride": 2}],
}
EC = EvalConfig(data="synthetic", train=TrainConfig(train_images=40, val_images=40, batch_size=20, resolution=8),
                latency=False)
SMALL = ["--data", "synthetic", "--train-images", "40", "--val-images", "40", "--batch-size", "20", "--resolution",
         "8", "--inline", "--no-baseline", "--json", "--cpus-per-worker", "1"]


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    return str(path)


def _cfg(space_file, storage, **kw) -> SearchConfig:
    base = dict(space=space_file, trials=3, sampler="tpe", seed=0, storage=storage, study_name="t",
                objectives=("accuracy", "macs"), eval=EC, runner="inline", evaluate_baseline=False, progress=False,
                screen="oneshot", screen_count=8, supernet_steps=20, cpus_per_worker=1)
    base.update(kw)
    return SearchConfig(**base)


def _load(storage, name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)


def _top_by_rank(trials, k):
    """Brute force (not the code under test): rank = how many peeling rounds until undominated."""
    left = {t.number: (-t.values[0], t.values[1]) for t in trials}
    rank, rounds = {}, 0
    while left:
        front = [n for n, a in left.items()
                 if not any(b[0] <= a[0] and b[1] <= a[1] and b != a for b in left.values())]
        for n in front:
            rank[n] = rounds
            del left[n]
        rounds += 1
    acc = {t.number: t.values[0] for t in trials}
    hashes, out = set(), []
    for n in sorted(rank, key=lambda n: (rank[n], -acc[n], n)):
        h = next(t.user_attrs["arch_hash"] for t in trials if t.number == n)
        if h not in hashes:
            hashes.add(h)
            out.append(n)
    return out[:k]


def test_screen_then_promote_the_top_by_rank_and_resume_without_queueing_twice(space_file, tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    res = run_search(_cfg(space_file, storage))
    assert res.evaluated == 3 and res.screen["screened"] == 8 and res.screen["promoted"] == 3
    assert res.screen["study"] == screen_study_name("t") == "t.oneshot"
    screen = _load(storage, "t.oneshot")
    assert [x.name.lower() for x in screen.directions] == ["maximize", "minimize"]
    scored = [t for t in screen.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs["status"] == "evaluated"]
    assert len(scored) == 8
    key = scored[0].user_attrs["settings_key"]
    tables = NasconvTables(storage)
    try:
        for t in scored:
            a = t.user_attrs
            assert a["fidelity"] == "oneshot" and a["settings_key"] == key and len(a["accuracy_ci"]) == 2
            assert t.values == [a["score"], a["macs"]]
            assert tables.get_cached(key, a["arch_hash"])["accuracy"] == a["accuracy"]  # the evaluation cache
    finally:
        tables.dispose()
    main_study = _load(storage, "t")
    done = [t for t in main_study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(done) == 3
    by_number = {t.number: t for t in scored}
    for t in done:  # trained stand-alone, the one-shot score beside it
        s = by_number[t.user_attrs["screen_trial"]]
        assert t.user_attrs["status"] == "evaluated" and t.user_attrs.get("fidelity") != "oneshot"
        assert t.params == s.params and t.user_attrs["arch_hash"] == s.user_attrs["arch_hash"]
        assert t.user_attrs["oneshot_accuracy"] == s.values[0]
        assert t.user_attrs["oneshot_accuracy_ci"] == s.user_attrs["accuracy_ci"]
    assert sorted(t.user_attrs["screen_trial"] for t in done) == sorted(_top_by_rank(scored, 3))

    again = run_search(_cfg(space_file, storage, screen_count=10, trials=4))  # a larger screen continues
    assert again.screen["scored"] + again.screen["cached"] == 2 and again.screen["promoted"] == 1
    assert len([t for t in _load(storage, "t.oneshot").trials if t.state == TrialState.COMPLETE]) == 10
    done = [t for t in _load(storage, "t").get_trials(states=(TrialState.COMPLETE,))]
    assert len(done) == 4 and all("screen_trial" in t.user_attrs for t in done)
    assert len({t.user_attrs["screen_trial"] for t in done}) == 4
    assert len({t.user_attrs["arch_hash"] for t in done}) == 4


class Ticks:
    """A clock that moves one second at every reading (the supernet's training loop reads it)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_time_stops_supernet_training_cleanly_and_the_same_command_resumes(space_file, tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    res = run_search(_cfg(space_file, storage, time_s=12, supernet_steps=30), clock=Ticks())
    assert res.stopped_on_time and res.screen["stopped_on_time"] and res.evaluated == 0
    assert 0 < res.screen["supernet_step"] < 30 and not res.screen["supernet_finished"]
    ckpt = list((tmp_path / "supernets").glob("tiny-*/supernet.pt"))
    assert len(ckpt) == 1  # kept
    assert res.screen["promoted"] == 0 and not _load(storage, "t").trials
    again = run_search(_cfg(space_file, storage, supernet_steps=30, screen_count=3, trials=1))
    assert again.screen["supernet_step"] == 30 and again.screen["screened"] == 3 and again.evaluated == 1
    assert len(list((tmp_path / "supernets").glob("tiny-*/supernet.pt"))) == 1  # the same supernet, resumed


@pytest.mark.slow
def test_on_ray_one_actor_loads_the_supernet_once(space_file, tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    res = run_search(_cfg(space_file, storage, runner="ray", workers=1, cpus_per_worker=1, screen_count=4, trials=1))
    assert res.screen["screened"] == 4 and res.evaluated == 1
    assert res.screen["actor_scored"] == res.screen["scored"] == 4 and res.screen["actor_loads"] == 1


def test_nondominated_ranks():
    losses = np.array([[0, 3], [1, 1], [3, 0], [2, 2], [4, 4], [1, 1]])
    assert nondominated_ranks(losses).tolist() == [0, 0, 0, 1, 2, 0]
    assert nondominated_ranks(np.zeros((0, 2))).tolist() == []


def _argv(space_file, tmp_path, *extra):
    return ["search", "--space", space_file, "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "t",
            "--objectives", "accuracy,macs", "--no-latency", *SMALL, *extra]


@pytest.mark.parametrize("extra, match", [
    (["--screen", "oneshot", "--proxy", "synflow"], "zero-cost score"),
    (["--screen", "fewshot"], "--screen"),
    (["--screen-count", "5"], "need --screen oneshot"),
    (["--screen", "oneshot", "--screen-count", "0"], "--screen-count"),
    (["--screen", "oneshot", "--supernet-steps", "0"], "--supernet-steps"),
])
def test_bad_flags_are_one_line_exit_2(space_file, tmp_path, capsys, extra, match):
    assert main(_argv(space_file, tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s.db").exists()


def test_a_latency_budget_without_a_table_is_refused_naming_the_profiler(space_file, tmp_path, capsys):
    argv = [a for a in _argv(space_file, tmp_path, "--screen", "oneshot", "--budget", "5ms") if a != "--no-latency"]
    argv[argv.index("accuracy,macs")] = "accuracy,latency"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "nasconv latency profile" in err and len(err.splitlines()) == 1
    assert not optuna.get_all_study_names(f"sqlite:///{tmp_path}/s.db")  # (the table was looked for there)


def test_a_latency_objective_without_a_table_screens_on_macs_and_says_so(space_file, tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    eval_cfg = EvalConfig(data="synthetic", train=EC.train, latency=True, latency_max_time_s=0.2)
    res = run_search(_cfg(space_file, storage, objectives=("accuracy", "latency"), eval=eval_cfg, screen_count=4,
                          trials=1))
    assert any("ranks on MACs in latency's place" in n for n in res.notes)
    screen = _load(storage, screen_study_name("t"))
    done = [t for t in screen.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and screen.user_attrs["latency_stand_in"] == "macs" and screen.user_attrs["scored"] == 4
    assert all(t.values[1] == t.user_attrs["macs"] and t.user_attrs["latency_stand_in"] == "macs" for t in done)
    (trained,) = [t for t in _load(storage, "t").trials if t.state == TrialState.COMPLETE]
    assert trained.user_attrs["latency_ms"] > 0 and "oneshot_accuracy" in trained.user_attrs


def test_a_users_own_model_space_is_refused(space_file):
    class ModelSpace:  # what a ``kind: model`` space file loads as, by its attributes
        name, kind = "mine", "model"

    with pytest.raises(UsageError, match="user's own model"):
        check_screenable(ModelSpace(), EC.resolved())


def test_too_large_is_refused_before_anything_is_stored(space_file, tmp_path, capsys, monkeypatch):
    import nasconv.supernet.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 1000)
    assert main(_argv(space_file, tmp_path, "--screen", "oneshot")) == 1
    err = capsys.readouterr().err.strip()
    assert "does not fit" in err and "GiB" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s.db").exists()


def test_a_corrupt_checkpoint_is_its_one_line_and_the_study_is_kept(space_file, tmp_path, capsys):
    first = ["--screen", "oneshot", "--screen-count", "2", "--supernet-steps", "2", "--trials", "1"]
    assert main(_argv(space_file, tmp_path, *first)) == 0
    assert json.loads(capsys.readouterr().out)["screen"]["screened"] == 2
    (ckpt,) = (tmp_path / "supernets").glob("tiny-*/supernet.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    more = ["--screen", "oneshot", "--screen-count", "3", "--supernet-steps", "2", "--trials", "2"]
    assert main(_argv(space_file, tmp_path, *more)) == 1
    err = capsys.readouterr().err.strip()
    assert "corrupt or truncated" in err and len(err.splitlines()) == 1
    storage = f"sqlite:///{tmp_path}/s.db"
    assert len(_load(storage, "t").get_trials(states=(TrialState.COMPLETE,))) == 1
    assert len(_load(storage, "t.oneshot").get_trials(states=(TrialState.COMPLETE,))) == 2
