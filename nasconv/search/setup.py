"""What a search checks and fits before its storage is written: a bad ``--data``, ``--device``,
budget or screening setting would otherwise leave a study of failed trials (or an empty one)
behind. The data is read once here, where the driver can read it, and the head, metric and proxy
length follow it (:mod:`nasconv.search.task`); a Ray cluster's driver that cannot read it says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nasconv.budget import Budget, check_feasible
from nasconv.data import load_dataset
from nasconv.data.registry import check_spec, readable_here
from nasconv.errors import UsageError
from nasconv.evaluate import keep_weights_problem
from nasconv.profile import resolve_device
from nasconv.search.config import SearchConfig, check_address
from nasconv.search.screen import check_screenable
from nasconv.search.task import TaskBinding, bind_task


@dataclass
class Prepared:
    """The search's settings and space fitted to its data (``task`` None where it was not read)."""

    cfg: SearchConfig
    space: Any
    task: TaskBinding | None = None
    notes: list[str] = field(default_factory=list)


def check_before_storage(cfg: SearchConfig, space: Any, budget: Budget, *, default_evaluator: bool,
                         runner: Any) -> Prepared:
    """Every check a search makes before it writes anything, and the data binding (module text).
    ``default_evaluator``: the evaluations are nasconv's (a test's own evaluator reads no data)."""
    if ("latency" in cfg.objectives or budget.latency_ms) and not cfg.eval.latency and cfg.latency == "measure":
        raise UsageError("a latency objective or budget needs latency measurement (drop --no-latency)")
    if cfg.keep_weights:
        problem = keep_weights_problem(space, cfg.eval)
        if problem:
            raise UsageError(problem)
    check_feasible(budget, space.cost_bounds(), space.name)
    out = Prepared(cfg, space)
    cluster = runner is None and cfg.address is not None and cfg.runner == "ray"
    remote_data = default_evaluator and cluster and not readable_here(cfg.eval.data, cfg.eval.data_dir,
                                                                      cfg.eval.holdout)
    if default_evaluator and not remote_data:
        if cfg.address is None or cfg.runner == "inline":
            resolve_device(cfg.eval.device)  # the workers are on this machine
        check_spec(cfg.eval.data, cfg.eval.data_dir, holdout=cfg.eval.holdout)
        out.task = bind_task(cfg.eval, space, choose_metric=cfg.choose_metric, size_proxy=cfg.size_proxy)
        out.cfg = cfg = dataclasses.replace(cfg, eval=out.task.eval)
        out.space = out.task.space
        if cfg.rungs > 1:
            ds = load_dataset(cfg.eval.data, data_dir=cfg.eval.data_dir, holdout=cfg.eval.holdout)
            cfg.fidelity.check_dataset(cfg.eval.train.train_images, len(ds.train_y), cfg.eval.data)
    if cluster:
        check_address(cfg.address)
    if remote_data:
        out.notes.append(f"note: {cfg.eval.data} is not readable on this machine, so the head keeps "
                         f"{space.num_classes} classes and the proxy is not sized to the data; run the "
                         "driver where the cluster's data is mounted to fit both")
    if cfg.screen:  # a space or memory the supernet cannot take
        check_screenable(out.space, cfg.eval)
    return out
