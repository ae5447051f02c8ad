"""End-to-end searches on resnet20 with a zero-cost proxy (seconds each)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from nasconv.budget import parse_budget
from nasconv.errors import BudgetError, StorageError, UnknownNameError, UsageError
from nasconv.evaluate import EvalConfig, evaluate, with_train_overrides
from nasconv.search import SearchConfig, run_search
from nasconv.storage import NasconvTables
from nasconv.train import TrainConfig

ZC = EvalConfig(proxy="synflow", train=TrainConfig(resolution=16), zc_batch=8, latency_max_time_s=0.5)


def _cfg(tmp_path, **kw):
    base = dict(space="resnet20", budget="30mflops", trials=8, sampler="random", seed=0,
                storage=f"sqlite:///{tmp_path}/s.db", eval=ZC, runner="inline", evaluate_baseline=False,
                progress=False)
    base.update(kw)
    return SearchConfig(**base)


def _study(cfg):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=cfg.study_name or "resnet20-30mflops", storage=cfg.storage)


def test_search_stores_trials_attrs_front_within_budget(tmp_path):
    cfg = _cfg(tmp_path, evaluate_baseline=True)
    res = run_search(cfg)
    assert res.evaluated == 8 and res.failed == 0
    study = _study(cfg)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.user_attrs["status"] != "rejected"]
    assert len(done) == 8
    for t in done:
        a = t.user_attrs
        for key in ("arch", "arch_hash", "macs", "params", "latency_ms", "latency_iqr_ms", "device", "score",
                    "train_time_s", "nasconv_version", "torch_version", "node"):
            assert key in a, key
        assert a["macs"] <= 30_000_000
        assert t.values[0] == a["score"] and t.values[1] == a["latency_ms"]
    rejected = [t for t in study.trials if t.user_attrs.get("status") == "rejected"]
    assert res.rejected == len(rejected)
    for t in rejected:  # never evaluated, told infeasible through the constraint mechanism
        assert "latency_ms" not in t.user_attrs and t.user_attrs["macs"] > 30_000_000
        assert t.constraints["macs"] > 0
    assert res.front and all(f["macs"] <= 30_000_000 for f in res.front)
    assert {f["trial"] for f in res.front} <= {t.number for t in done}
    # the baseline (over budget here) is evaluated once for reference, not as a trial
    assert res.baseline["macs"] == 40_813_184 and study.user_attrs["baseline"]["macs"] == 40_813_184
    snaps = NasconvTables(cfg.storage).snapshots("resnet20-30mflops")
    assert len(snaps) == 8 and snaps[-1].front_trials == sorted(f["trial"] for f in res.front)
    assert all(b.hypervolume >= a.hypervolume for a, b in zip(snaps, snaps[1:]))


def test_resume_continues_the_count(tmp_path):
    run_search(_cfg(tmp_path, trials=4))
    res = run_search(_cfg(tmp_path, trials=7))
    assert res.evaluated == 7
    study = _study(_cfg(tmp_path))
    assert sum(1 for t in study.trials if t.user_attrs.get("status") in ("evaluated", "cached")) == 7
    again = run_search(_cfg(tmp_path, trials=7))  # already complete: nothing new
    assert again.evaluated == 7 and len(_study(_cfg(tmp_path)).trials) == len(study.trials)


def test_depth_and_width_are_integer_parameters(tmp_path):
    """resnet20's depths (2,3,4) and widths (e.g. 8,16,24,32) are ordered: the sampler gets them as
    integers with their step, and the values it picks are the architecture's."""
    cfg = _cfg(tmp_path, trials=4)
    run_search(cfg)
    trials = [t for t in _study(cfg).trials if t.state == TrialState.COMPLETE]
    assert trials
    for t in trials:
        d = t.distributions
        assert isinstance(d["s0_op"], optuna.distributions.CategoricalDistribution)
        assert d["s0_depth"] == optuna.distributions.IntDistribution(2, 4, step=1)
        assert d["s0_width"] == optuna.distributions.IntDistribution(8, 32, step=8)
        assert d["s2_width"] == optuna.distributions.IntDistribution(32, 128, step=32)
        stages = t.user_attrs["arch"]["stages"]
        assert [st["depth"] for st in stages] == [t.params[f"s{i}_depth"] for i in range(3)]
        assert [st["width"] for st in stages] == [t.params[f"s{i}_width"] for i in range(3)]


def test_a_study_begun_with_categorical_depths_keeps_them(tmp_path, monkeypatch):
    """Optuna fixes a parameter's distribution within a study: a study whose trials hold depth and
    width as categoricals (as earlier nasconv made them) is continued with categoricals."""
    import nasconv.search as search
    import nasconv.search.driver as driver

    assert search.ordinal_params(optuna.create_study(directions=["maximize", "minimize"]))
    with monkeypatch.context() as m:  # the study as an earlier nasconv began it
        m.setattr(driver, "ordinal_params", lambda study: False)
        run_search(_cfg(tmp_path, trials=2))
    study = _study(_cfg(tmp_path))
    assert not search.ordinal_params(study)
    res = run_search(_cfg(tmp_path, trials=4))  # continued: no "different distribution" error
    assert res.evaluated == 4
    for t in _study(_cfg(tmp_path)).trials:
        assert isinstance(t.distributions["s0_width"], optuna.distributions.CategoricalDistribution)


def _op_label(t, stage):
    from nasconv.arch import ArchSpec

    return ArchSpec.from_dict(t.user_attrs["arch"]).stages[stage].op.label()


def test_tpe_sees_operator_families(tmp_path):
    """TPE's operator parameters: the family, and which of its choices where it has several (a
    conditional parameter); the architecture is the one they name."""
    from nasconv.spaces import load_space

    cfg = _cfg(tmp_path, sampler="tpe", trials=14)  # past TPE's 10 random start-up trials
    run_search(cfg)
    space = load_space("resnet20")
    families = list(dict.fromkeys(op.name for op in space.stages[0].ops))
    trials = [t for t in _study(cfg).trials if t.state == TrialState.COMPLETE]
    assert len(trials) >= 14
    seen = set()
    for t in trials:
        assert not any(name.endswith("_op") for name in t.params)
        for i in range(3):
            family = t.params[f"s{i}_family"]
            assert t.distributions[f"s{i}_family"] == optuna.distributions.CategoricalDistribution(families)
            members = [op.label() for op in space.stages[i].ops if op.name == family]
            label = _op_label(t, i)
            if len(members) > 1:
                assert t.distributions[f"s{i}_{family}"] == optuna.distributions.CategoricalDistribution(members)
                assert t.params[f"s{i}_{family}"] == label
                seen.add(family)
            else:
                assert f"s{i}_{family}" not in t.params and label == members[0]
    assert seen  # some trial took a family with a hyperparameter


@pytest.mark.parametrize("first,then", [("tpe", "nsga2"), ("nsga2", "tpe")])
def test_a_study_keeps_its_operator_form_across_samplers(tmp_path, first, then):
    """Continued with another sampler, a study keeps the operator parameters it began with
    (no 'different distribution' error from Optuna)."""
    run_search(_cfg(tmp_path, sampler=first, trials=3))
    res = run_search(_cfg(tmp_path, sampler=then, trials=6))
    assert res.evaluated == 6
    names = {name for t in _study(_cfg(tmp_path)).trials for name in t.params}
    expect, other = ("s0_family", "s0_op") if first == "tpe" else ("s0_op", "s0_family")
    assert expect in names and other not in names


def test_repeated_architecture_comes_from_the_cache(tmp_path):
    calls = []

    def counting(arch, config):
        calls.append(arch.arch_hash)
        return evaluate(arch, config)

    run_search(_cfg(tmp_path, study_name="first"), evaluator=counting)
    n_first = len(calls)
    # Same sampler and seed in another study: the same architectures, all reused.
    res = run_search(_cfg(tmp_path, study_name="second"), evaluator=counting)
    assert len(calls) == n_first and res.cached == 8
    statuses = {t.user_attrs.get("status") for t in _study(_cfg(tmp_path, study_name="second")).trials}
    assert "cached" in statuses and "evaluated" not in statuses


def test_front_lists_an_architecture_once(tmp_path):
    """A repeat of a front architecture (cached, same values) is on Optuna's front too; nasconv's
    front, its snapshots and `pareto` list the network once, under its first trial."""
    from nasconv.results import study_front
    from nasconv.storage import open_study as load_study

    cfg = _cfg(tmp_path)
    first = run_search(cfg)
    top = first.front[0]
    study = _study(cfg)
    study.enqueue_trial(study.trials[top["trial"]].params)
    res = run_search(_cfg(tmp_path, trials=9))
    repeat = _study(cfg).trials[-1]
    assert repeat.user_attrs["status"] == "cached" and repeat.user_attrs["arch_hash"] == top["arch_hash"]
    assert repeat.number in {t.number for t in _study(cfg).best_trials}  # Optuna's front has it twice
    hashes = [f["arch_hash"] for f in res.front]
    assert len(hashes) == len(set(hashes)) and top["trial"] in [f["trial"] for f in res.front]
    assert repeat.number not in NasconvTables(cfg.storage).snapshots("resnet20-30mflops")[-1].front_trials
    loaded, tables = load_study("resnet20-30mflops", cfg.storage)
    assert [t.number for t in study_front(loaded)] == [f["trial"] for f in res.front]
    tables.dispose()


def _flaky(arch, config):
    if arch.arch_hash[-1] in "0123":  # about a quarter of the architectures
        raise RuntimeError(f"simulated worker failure on {arch.arch_hash}")
    return evaluate(arch, config)


def test_failing_evaluation_becomes_fail_and_search_goes_on(tmp_path):
    res = run_search(_cfg(tmp_path, trials=10), evaluator=_flaky)
    assert res.evaluated == 10 and res.failed >= 1
    failed = [t for t in _study(_cfg(tmp_path)).trials if t.state == TrialState.FAIL]
    assert failed and all("simulated worker failure" in t.user_attrs["fail_reason"] for t in failed)


def test_pareto_json_and_plot(tmp_path):
    cfg = _cfg(tmp_path, trials=6)
    run_search(cfg)
    png = tmp_path / "front.png"
    out = subprocess.run([sys.executable, "-m", "nasconv.cli", "pareto", "--study", "resnet20-30mflops",
                          "--storage", cfg.storage, "--json", "--plot", str(png)],
                         capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["study"] == "resnet20-30mflops" and data["evaluated"] == 6 and data["front"]
    assert all({"trial", "ops", "macs", "params", "latency_ms"} <= set(f) for f in data["front"])
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_study_of_another_budget_is_refused(tmp_path):
    run_search(_cfg(tmp_path, trials=2, study_name="s"))
    with pytest.raises(StorageError, match="belongs to space 'resnet20', budget '30mflops'"):
        run_search(_cfg(tmp_path, trials=2, study_name="s", budget="25mflops"))


def test_study_of_other_evaluation_settings_names_them(tmp_path):
    """E.g. a study begun before a default changed: the refusal says which setting to pass."""
    run_search(_cfg(tmp_path, trials=2, study_name="s"))
    other = _cfg(tmp_path, trials=2, study_name="s")
    other = dataclasses.replace(other, eval=with_train_overrides(other.eval, seed=5))
    with pytest.raises(StorageError, match=r"differs in evaluation settings: train.seed: 0 in the study, 5 now; "
                                           r"use another --study name, or the study's settings to continue it"):
        run_search(other)


@pytest.mark.parametrize("kw,exc,match", [
    ({"budget": "1mflops"}, BudgetError, "fewest MACs achievable are 1,509,696"),
    ({"trials": 0}, UsageError, "--trials must be >= 1"),
    ({"sampler": "cmaes"}, UnknownNameError, "known: nsga2, tpe, gp, random"),
    ({"objectives": ("accuracy", "energy")}, UnknownNameError, "unknown objective 'energy'"),
    ({"storage": "notaurl"}, StorageError, "bad storage URL"),
])
def test_bad_configs_fail_before_anything_runs(tmp_path, kw, exc, match):
    with pytest.raises(exc, match=match):
        run_search(_cfg(tmp_path, **kw))


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "gp"])
def test_samplers_run(tmp_path, sampler):
    res = run_search(_cfg(tmp_path, sampler=sampler, trials=4, objectives=("accuracy", "macs")))
    assert res.evaluated == 4


def test_within_budget_placeholders_do_not_leak_into_the_front(tmp_path):
    res = run_search(_cfg(tmp_path, budget="8mflops", trials=3, sampler="random"))
    assert res.rejected > 0
    assert all(f["macs"] <= parse_budget("8mflops").macs for f in res.front)


def test_keep_weights_then_export_with_weights(tmp_path):
    import torch

    from nasconv import export

    cfg = _cfg(tmp_path, trials=2, keep_weights=True,
               eval=EvalConfig(proxy="train", latency=False,
                               train=TrainConfig(train_images=128, val_images=64, batch_size=32, resolution=16,
                                                 max_depth=None, width_factor=1.0, small_stem=False)),
               objectives=("accuracy", "macs"))
    run_search(cfg)
    out = tmp_path / "exp"
    subprocess.run([sys.executable, "-m", "nasconv.cli", "export", "--study", "resnet20-30mflops", "--storage",
                    cfg.storage, "--best", "accuracy", "--weights", "--out", str(out)], check=True,
                   capture_output=True, text=True)
    pts = list(out.glob("*.pt"))
    assert len(pts) == 1
    model = export.load(str(pts[0].with_suffix("")))
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_keep_weights_refuses_a_reduced_proxy(tmp_path):
    with pytest.raises(UsageError, match="--full-proxy"):
        run_search(_cfg(tmp_path, keep_weights=True,
                        eval=EvalConfig(proxy="train", train=TrainConfig(max_depth=1))))


def test_tpe_is_the_default_and_a_study_keeps_the_sampler_it_began_with(tmp_path):
    from nasconv.search import SearchDriver

    new = _cfg(tmp_path, trials=2, sampler=None, study_name="new")
    run_search(new)
    assert _study(new).user_attrs["sampler"] == "tpe"
    fresh = SearchDriver(new)
    assert isinstance(fresh.study.sampler, optuna.samplers.TPESampler)
    fresh.tables.dispose()
    old = _cfg(tmp_path, trials=2, sampler="nsga2", study_name="old")
    run_search(old)
    again = SearchDriver(dataclasses.replace(old, sampler=None, trials=3))  # no --sampler: its own
    assert isinstance(again.study.sampler, optuna.samplers.NSGAIISampler)
    again.tables.dispose()
    named = SearchDriver(dataclasses.replace(old, sampler="random"))  # a named one is used
    assert isinstance(named.study.sampler, optuna.samplers.RandomSampler)
    named.tables.dispose()
