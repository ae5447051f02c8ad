"""nasconv.search.paired: at the end of a search its front and the baseline are timed together,
stored on the study, and the latency line stands on those timings (injected here: the test knows
what they are), in the search's result and in ``pareto`` alike."""

from __future__ import annotations

import json

import optuna
import pytest

import nasconv.search.paired as paired_mod
from nasconv.cli import main
from nasconv.cost import estimate_cost
from nasconv.evaluate import EvalConfig
from nasconv.latency.paired import PairedTiming
from nasconv.profile import device_name, resolve_device
from nasconv.search import SearchConfig, run_search
from nasconv.train import TrainConfig
from tests.latency_helpers import tiny_space

ZC = EvalConfig(proxy="synflow", train=TrainConfig(resolution=16), zc_batch=8, latency_threads=1,
                latency_max_time_s=0.2)


def _cfg(tmp_path, **kw):
    base = dict(space=str(tmp_path / "tiny20.yaml"), trials=6, sampler="random", seed=0, study_name="p",
                storage=f"sqlite:///{tmp_path}/s.db", eval=ZC, runner="inline", evaluate_baseline=True,
                progress=False, max_rejections=200)
    return SearchConfig(**{**base, **kw})


def _evaluator(here: str | None):
    """Trains nothing; 'times' every network 5 ms, on device ``here`` (None: says no device)."""
    def evaluate(arch, config):
        cost = estimate_cost(arch)
        out = {"arch_hash": arch.arch_hash, "score": (int(arch.arch_hash, 16) % 1000) / 1000, "params": cost.params,
               "macs": cost.macs, "latency_ms": 5.0 + (int(arch.arch_hash, 16) % 7) / 10,
               "latency_ci_ms": [4.9, 6.0], "settings_key": "x"}
        return out | ({"device_name": here} if here else {})
    return evaluate


def _inject(monkeypatch, ratio_of):
    """``time_together`` replaced: each network timed ``ratio_of(hash)`` x 4 ms in each of 31 rounds,
    the machine's speed moving 2x from round to round."""
    calls = []

    def fake(archs, **kw):
        calls.append((sorted(archs), kw))
        timings = {h: [4.0 * ratio_of(h) * (1 + (k % 5) / 4) for k in range(31)] for h in archs}
        return PairedTiming(timings, 31, "2026-12-07T15:00:00+00:00", 0.5, "cpu", "x", 1, 1, None)

    monkeypatch.setattr(paired_mod, "time_together", fake)
    return calls


def test_the_front_and_the_baseline_are_timed_together_at_the_end(tmp_path, monkeypatch, capsys):
    space = tiny_space(tmp_path)
    base = space.baseline().arch_hash
    calls = _inject(monkeypatch, lambda h: 1.0 if h == base else 0.5)  # every member 2x faster
    res = run_search(_cfg(tmp_path), evaluator=_evaluator(device_name(resolve_device("cpu"))))
    assert len(calls) == 1
    timed, kw = calls[0]
    assert set(timed) == {r["arch_hash"] for r in res.front} | {base}
    assert kw["threads"] == 1 and kw["batch"] == 1 and kw["max_time_s"] == pytest.approx(0.2 * len(timed))
    lat = res.noise["latency"]
    assert lat["paired"] and lat["differ_from_baseline"] == len(res.front)
    assert all(x["ratio"] == pytest.approx(0.5) for x in lat["ratio_to_baseline"])
    assert lat["neighbour_pairs_resolved"] == 0  # the members: all the same speed, timed together
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path}/s.db")
    assert study.user_attrs["latency_paired"]["reference"] == base
    capsys.readouterr()
    assert main(["pareto", "--study", "p", "--storage", f"sqlite:///{tmp_path}/s.db", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["noise"]["latency"] == lat


def test_a_front_not_timed_on_this_device_is_not_timed_again_and_no_difference_is_claimed(tmp_path, monkeypatch):
    tiny_space(tmp_path)
    calls = _inject(monkeypatch, lambda h: 1.0)
    res = run_search(_cfg(tmp_path), evaluator=_evaluator(None))
    assert calls == []
    lat = res.noise["latency"]
    assert lat["paired"] is False and "differ_from_baseline" not in lat
    assert "no paired timing of this front is stored" in lat["why"]
