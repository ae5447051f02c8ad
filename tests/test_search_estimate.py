"""The start line of a search: what it will do and how long, from an injected step time (the
arithmetic is what is tested; the measurement itself is timed once, its value not asserted)."""

from __future__ import annotations

import dataclasses

import pytest

from nasconv.cli import main
from nasconv.evaluate import EvalConfig
from nasconv.search import SearchConfig
from nasconv.search import estimate as est
from nasconv.spaces import load_space
from nasconv.train import TrainConfig

TRAIN = EvalConfig(data="synthetic", train=TrainConfig(train_images=640, val_images=192, batch_size=64,
                                                       resolution=16), latency=True, latency_max_time_s=2.0)


def _cfg(**kw):
    base = dict(space="resnet20", trials=10, eval=TRAIN, runner="inline", progress=False)
    base.update(kw)
    return SearchConfig(**base)


def test_flat_plan_counts_steps_and_latency():
    calls = []
    plan = est.plan_search(_cfg(), load_space("resnet20"), measure=lambda s, e: calls.append(e) or 0.5)
    per = 10 + 192 / 64 * est.VAL_STEP_FRACTION  # 10 training steps, 3 validation batches
    assert len(calls) == 1 and plan.steps == pytest.approx(10 * per + per)  # + the baseline
    assert plan.seconds == pytest.approx(plan.steps * 0.5 + 10 * 2.0)
    assert (plan.low_s, plan.high_s) == pytest.approx((plan.seconds * est.RANGE[0], plan.seconds * est.RANGE[1]))
    line = plan.line()
    assert line.startswith("plan: 10 candidate(s) of resnet20, proxy train, 1 worker(s): about ")
    assert "0.5 s" in line and "range" in line


def test_rungs_resume_and_ray():
    space = load_space("resnet20")
    flat = est.plan_search(_cfg(evaluate_baseline=False), space, measure=lambda s, e: 1.0)
    mf = est.plan_search(_cfg(evaluate_baseline=False, rungs=3), space, measure=lambda s, e: 1.0)
    assert mf.steps == pytest.approx(3 * flat.steps) and "over 3 rungs" in mf.line()
    resumed = est.plan_search(_cfg(), space, done=4, baseline_done=True, measure=lambda s, e: 1.0)
    assert resumed.candidates == 6 and resumed.steps == pytest.approx(flat.steps * 6 / 10)
    ray = est.plan_search(_cfg(runner="ray", evaluate_baseline=False), space, measure=lambda s, e: 1.0)
    assert ray.seconds == pytest.approx(flat.seconds + est.RAY_START_S)
    done = est.plan_search(_cfg(), space, done=10, measure=lambda s, e: pytest.fail("measured for nothing"))
    assert done.line().endswith("nothing left to evaluate")
    remote = est.plan_search(_cfg(address="10.0.0.1:6379", runner="ray"), space,
                             measure=lambda s, e: pytest.fail("a cluster is not timed here"))
    assert remote.seconds is None and "not measured here" in remote.line()


def test_screening_adds_the_supernet_and_the_screened_subnets():
    space = load_space("resnet20")
    flat = est.plan_search(_cfg(evaluate_baseline=False), space, measure=lambda s, e: 1.0)
    shot = est.plan_search(_cfg(evaluate_baseline=False, screen="oneshot", screen_count=50, supernet_steps=400),
                           space, measure=lambda s, e: 1.0)
    per_subnet = (4 + 192 / 64) * est.VAL_STEP_FRACTION  # 4 recalibration + 3 validation batches, forward only
    assert shot.steps == pytest.approx(flat.steps + 400 + 50 * per_subnet)
    assert "after 50 screened by a supernet of 400 steps" in shot.line()


def test_zero_cost_and_time_budget():
    space = load_space("resnet20")
    zc = est.plan_search(_cfg(eval=dataclasses.replace(TRAIN, proxy="synflow", latency=False), time_s=60), space,
                         measure=lambda s, e: 100.0)
    assert zc.steps == pytest.approx(11.0) and "--time 1m stops it earlier" in zc.line()


def test_measurement_runs_on_the_baseline():
    assert est.measure_train_step(load_space("resnet20"), TRAIN, batch_size=8) > 0


def test_search_prints_the_plan_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(est, "measure_train_step", lambda space, eval_cfg: 0.25)
    code = main(["search", "--space", "resnet20", "--budget", "30mflops", "--data", "synthetic", "--inline",
                 "--trials", "1", "--no-baseline", "--proxy", "synflow", "--resolution", "16", "--no-latency",
                 "--objectives", "accuracy,macs",
                 "--storage", f"sqlite:///{tmp_path}/p.db"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    plan = [i for i, line in enumerate(out) if line.startswith("plan: ")]
    assert len(plan) == 1 and plan[0] < next(i for i, line in enumerate(out) if line.startswith("study "))
    line = out[plan[0]]
    assert line.startswith("plan: 1 candidate(s) of resnet20, proxy synflow, 1 worker(s): about 0s")
    assert "0.25 s" in line
