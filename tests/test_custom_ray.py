"""A model space searched on real Ray workers (a local instance, one CPU): the worker imports the
user's factory from where the driver found it (the module's folder travels with the candidate)."""

from __future__ import annotations

import sys
import textwrap

import optuna
import pytest

from nasconv.custom import space_from_model, write_space
from nasconv.evaluate import EvalConfig
from nasconv.search import SearchConfig, run_search

pytestmark = pytest.mark.slow

MODULE = """
    from torch import nn

    def make(num_classes=10):
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
"""


def test_model_space_search_on_local_ray_imports_the_factory_on_the_worker(tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "own_net_ray.py").write_text(textwrap.dedent(MODULE))
    sys.path.insert(0, str(mods))
    try:
        space = space_from_model("own_net_ray:make", "3x32x32")  # a dotted module, found on the driver's path
    finally:
        sys.path.remove(str(mods))  # a Ray worker never had it on its path
    (tmp_path / "sp").mkdir()
    path = write_space(space, tmp_path / "sp" / "own.yaml")
    storage = f"sqlite:///{tmp_path}/ray.db"
    cfg = SearchConfig(space=str(path), budget=None, trials=2, sampler="random", seed=1, storage=storage, workers=1,
                       cpus_per_worker=1, evaluate_baseline=False, progress=False, objectives=("accuracy", "macs"),
                       eval=EvalConfig(data="synthetic", proxy="grad_norm", latency=False, zc_batch=8))
    res = run_search(cfg)
    assert res.evaluated == 2 and res.failed == 0
    study = optuna.load_study(study_name=res.study_name, storage=storage)
    done = [t for t in study.trials if t.user_attrs.get("status") == "evaluated"]
    assert len(done) == 2 and all("ray_node_id" in t.user_attrs and t.user_attrs["worker_pid"] for t in done)
    assert all(t.user_attrs["arch"]["module_dir"] == str(mods.resolve()) for t in done)
