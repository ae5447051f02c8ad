"""What a search will do and roughly how long it will take on this machine, said when it starts.

The time comes from a measurement, not a constant: one training step of the space's baseline as
the proxy trains it (the reduced copy, at the proxy's batch and resolution) is timed here, and the
plan counts the steps the search will take (per candidate: the training steps, validation batches
and the latency measurement's time cap; multi-fidelity: about one rung-0 training per candidate
per rung, since rung r trains eta^r times longer on 1/eta^r of the candidates; one-shot screening:
the supernet's steps and each screened subnet's forward passes, :func:`screen_steps`). Candidates differ
from the baseline, so the figure comes with a range (:data:`RANGE`). On a Ray cluster
(``--address``) the workers' speed is not this machine's: no time is given.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from nasconv.search.config import SearchConfig
from nasconv.search.deadline import format_duration

#: the estimate's range, as factors of the point estimate: a candidate under the budget trains
#: faster than the baseline, one with a costlier operator can be slower; the single step timed
#: here varies with the machine's load
RANGE = (0.5, 1.5)
#: a validation batch (forward only) costs about this fraction of a training step
VAL_STEP_FRACTION = 1 / 3
#: starting a local Ray instance and its workers (seconds; once per search)
RAY_START_S = 10.0
#: steps timed after one warm-up step; the median is used
TIMED_STEPS = 3


@dataclass(frozen=True)
class SearchPlan:
    """What the search will do; ``seconds`` None when it is not estimated (a remote cluster)."""

    space: str
    candidates: int
    rungs: int
    workers: int
    proxy: str
    steps: float  # training-step equivalents in all
    step_s: float | None
    seconds: float | None
    low_s: float | None
    high_s: float | None
    time_s: float | None = None
    #: one-shot screening: (supernet training steps, candidates screened), part of ``steps``
    screen: tuple[int, int] | None = None

    def line(self) -> str:
        what = f"plan: {self.candidates} candidate(s) of {self.space}"
        if self.rungs > 1:
            what += f" over {self.rungs} rungs"
        what += f", proxy {self.proxy}, {self.workers} worker(s)"
        if self.screen:
            what += (f", after {self.screen[1]} screened by a supernet of {self.screen[0]:,} steps (fewer when "
                     "its checkpoint is stored)")
        if self.candidates == 0:
            return what + ": nothing left to evaluate"
        if self.seconds is None:
            return what + ": no time estimate (the cluster's speed is not measured here)"
        est = (f"about {format_duration(self.seconds)} on this machine (range {format_duration(self.low_s or 0)}"
               f"-{format_duration(self.high_s or 0)}, from one training step of the baseline timed at "
               f"{self.step_s:.3g} s)")
        if self.time_s is not None and (self.low_s or 0) > self.time_s:
            est += f"; --time {format_duration(self.time_s)} stops it earlier"
        return f"{what}: {est}"


def measure_train_step(space: Any, eval_cfg: Any, *, batch_size: int | None = None) -> float:
    """Seconds of one training step (forward, backward, AdamW) of the space's baseline as the
    proxy trains it, on random images at the proxy's batch and resolution, on the CPU or the
    device the search names; the median of :data:`TIMED_STEPS` after a warm-up step."""
    import torch

    from nasconv.build import build_model
    from nasconv.profile import resolve_device
    from nasconv.train import reduced_copy

    tc = eval_cfg.train
    classes = getattr(space, "num_classes", 10) or 10
    arch = space.baseline()
    proxy = reduced_copy(arch, max_depth=tc.max_depth, width_factor=tc.width_factor, resolution=tc.resolution,
                         num_classes=classes, in_channels=arch.in_channels, small_stem=tc.small_stem)
    dev = resolve_device(eval_cfg.device)
    model = build_model(proxy, num_classes=classes).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n = batch_size or tc.batch_size
    x = torch.randn(n, arch.in_channels, tc.resolution, tc.resolution, device=dev)
    y = torch.randint(0, classes, (n,), device=dev)
    times = []
    for i in range(TIMED_STEPS + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def steps_per_candidate(cfg: SearchConfig) -> float:
    """Training-step equivalents of one rung-0 evaluation (latency: its time cap, added apart)."""
    e, tc = cfg.eval, cfg.eval.train
    if e.proxy != "train":  # a zero-cost score: about one step on zc_batch images
        return max(1.0, e.zc_batch / max(1, tc.batch_size))
    train = tc.epochs * max(1, tc.train_images // tc.batch_size)
    val = (tc.val_images or 0) / max(1, tc.batch_size) * VAL_STEP_FRACTION
    return train + val


def screen_steps(cfg: SearchConfig) -> tuple[int, int, float]:
    """(supernet steps, candidates screened, training-step equivalents of both): a supernet step
    is one single-path training step at the proxy's settings; scoring a subnet recalibrates batch
    norm on a few batches and validates (forward passes, as a validation batch)."""
    from nasconv.supernet.evaluate import RECALIBRATION_BATCHES
    from nasconv.supernet.train import DEFAULT_STEPS

    tc = cfg.eval.train
    sn = cfg.supernet_steps or DEFAULT_STEPS
    per_subnet = (RECALIBRATION_BATCHES + (tc.val_images or 0) / max(1, tc.batch_size)) * VAL_STEP_FRACTION
    return sn, cfg.screen_count, sn + cfg.screen_count * per_subnet


def plan_search(cfg: SearchConfig, space: Any, *, done: int = 0, baseline_done: bool = False,
                measure: Callable[..., float] | None = None) -> SearchPlan:
    """The plan for the ``cfg.trials - done`` candidates left; ``measure(space, eval_cfg)``
    times one training step (default :func:`measure_train_step`; tests inject it)."""
    left = max(0, cfg.trials - done)
    per = steps_per_candidate(cfg)
    rungs = max(1, cfg.rungs)
    steps = left * per * rungs  # ASHA: 1/eta^r of the candidates train eta^r times longer at rung r
    if cfg.evaluate_baseline and not baseline_done and left:
        steps += per * cfg.eta ** (rungs - 1)
    screen = screen_steps(cfg) if cfg.screen and left else None
    if screen:
        steps += screen[2]
    base = dict(space=space.name, candidates=left, rungs=rungs, workers=cfg.workers, proxy=cfg.eval.proxy,
                steps=steps, time_s=cfg.time_s, screen=screen[:2] if screen else None)
    if cfg.address is not None or not left:
        return SearchPlan(**base, step_s=None, seconds=None, low_s=None, high_s=None)
    step_s = (measure or measure_train_step)(space, cfg.eval)
    latency_s = cfg.eval.latency_max_time_s if cfg.eval.latency else 0.0
    # Local workers share this machine's cores (each gets cores/workers): about the same throughput.
    seconds = steps * step_s + left * latency_s + (RAY_START_S if cfg.runner == "ray" else 0.0)
    return SearchPlan(**base, step_s=step_s, seconds=seconds, low_s=seconds * RANGE[0], high_s=seconds * RANGE[1])


def stored_progress(storage: str, study_name: str) -> tuple[int, bool]:
    """(candidates evaluated, whether the baseline is) in the stored study; (0, False) when none."""
    from nasconv.errors import NasconvError
    from nasconv.results import EVALUATED
    from nasconv.storage import open_study

    try:
        study, tables = open_study(study_name, storage, readonly=True)
    except NasconvError:
        return 0, False
    try:
        from optuna.trial import TrialState

        n = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("status") in EVALUATED)
        return n, "baseline" in study.user_attrs
    finally:
        tables.dispose()
