"""The search on real Ray workers (a local instance started for the run)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from nasconv.evaluate import EvalConfig, evaluate
from nasconv.search import SearchConfig, run_search
from nasconv.train import TrainConfig

pytestmark = pytest.mark.slow


def _sometimes_fails(arch, config):
    if arch.arch_hash[-1] in "0123":
        raise ValueError("deliberate failure inside a Ray worker")
    return evaluate(arch, config)


def test_search_on_local_ray(tmp_path):
    storage = f"sqlite:///{tmp_path}/ray.db"
    cfg = SearchConfig(space="resnet20", budget="30mflops", trials=8, sampler="random", seed=1, storage=storage,
                       workers=2, cpus_per_worker=1, evaluate_baseline=False, progress=False,
                       eval=EvalConfig(proxy="naswot", train=TrainConfig(resolution=16), zc_batch=8,
                                       latency_max_time_s=0.5))
    res = run_search(cfg, evaluator=_sometimes_fails)
    assert res.evaluated == 8
    study = optuna.load_study(study_name="resnet20-30mflops", storage=storage)
    done = [t for t in study.trials if t.user_attrs.get("status") == "evaluated"]
    assert done and all("ray_node_id" in t.user_attrs and t.user_attrs["threads"] == 1 for t in done)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("deliberate failure inside a Ray worker" in t.user_attrs["fail_reason"] for t in failed)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
