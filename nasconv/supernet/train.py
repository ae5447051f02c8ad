"""Train a supernet by single-path sampling, checkpointed and resumable.

Each step trains one architecture's subnet on one batch. The architecture is drawn uniformly
over each stage's operator *families* (then uniformly over the family's hyperparameters, depths
and widths), as Optuna's TPE with the family form explores a space first, and only among
architectures within the search's budget (its analytic MACs and params; a latency limit needs a
latency model and is not applied here): the supernet is trained on the architectures the search
will ask it about. Uniform over choices instead would give a family with five hyperparameter
settings five times the steps of ``standard``.

Everything a step does is a function of (seed, step): the architecture from
``random.Random(f"{seed}:{step}")``, the batch from the epoch's permutation of a generator seeded
by the epoch. So a run resumed from a checkpoint (weights, AdamW state, step) continues exactly
as the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from nasconv.arch import ArchSpec
from nasconv.budget import Budget
from nasconv.cost import estimate_cost
from nasconv.data import Dataset, load_dataset
from nasconv.errors import NasconvError, Terminated, UsageError
from nasconv.evaluate import EvalConfig
from nasconv.ops import set_temperature
from nasconv.precision import autocast
from nasconv.profile import resolve_device
from nasconv.spaces import SearchSpace
from nasconv.supernet.memory import check_fits, estimate_memory
from nasconv.supernet.model import ProxySettings, Supernet, load_weights
from nasconv.supernet.store import checkpoint_path, read_checkpoint, save_checkpoint
from nasconv.train import prepare_split

#: single-path sampling rule (part of the identity: another rule is another supernet)
SAMPLING = "uniform-family"
#: draws before a budget is declared to leave (almost) no architecture
MAX_DRAWS = 2000
#: steps between two reads of the loss (divergence check, progress)
CHECK_EVERY = 25
#: the supernet's training images by default (the held-out split stays the brief training's)
DEFAULT_TRAIN_IMAGES = 40_000
DEFAULT_STEPS = 3000


class SupernetDivergedError(NasconvError):
    """The supernet's loss went NaN or infinite."""


@dataclass(frozen=True)
class SupernetConfig:
    """What decides a supernet's weights (all of it in :meth:`identity`) and how it is checkpointed."""

    #: data, device and the proxy's training settings (optimizer, lr, batch, resolution, reduction)
    eval: EvalConfig
    budget: Budget = field(default_factory=Budget)
    steps: int = DEFAULT_STEPS
    train_images: int | None = DEFAULT_TRAIN_IMAGES
    #: seconds of training between two checkpoints (one is also written at the end and on a stop)
    checkpoint_every_s: float = 180.0

    def check(self) -> None:
        if self.steps < 1:
            raise UsageError(f"supernet steps must be >= 1, got {self.steps}")
        if self.train_images is not None and self.train_images < self.eval.train.batch_size:
            raise UsageError(f"supernet training images must be at least one batch "
                             f"({self.eval.train.batch_size}), got {self.train_images}")
        if self.eval.train.precision == "fp16":
            raise UsageError("the supernet trains in fp32 or bf16, not fp16 (its loss scaler is not checkpointed)")
        if self.eval.proxy != "train":
            raise UsageError(f"one-shot screening replaces the training proxy; --proxy {self.eval.proxy} has "
                             "no supernet (a zero-cost score trains nothing)")
        self.eval.check()

    @property
    def train(self) -> Any:
        return replace(self.eval.train, train_images=self.train_images or 10**9)


def load_data(cfg: SupernetConfig) -> Dataset:
    """The evaluation settings' dataset (its held-out split as the brief training's)."""
    e = cfg.eval
    extra = {"holdout": e.holdout} if getattr(e, "holdout", None) is not None else {}
    return load_dataset(e.data, data_dir=e.data_dir, seed=e.train.seed, cache_dir=e.cache_dir, **extra)


def data_identity(ds: Dataset, spec: str) -> dict[str, Any]:
    """The data's name, split sizes and a fingerprint of its labels and every 97th image."""
    h = hashlib.sha256()
    for t in (ds.train_y, ds.val_y, ds.train_x[::97], ds.val_x[::97]):
        h.update(t.contiguous().numpy().tobytes())
    return {"spec": spec, "name": ds.name, "train": int(len(ds.train_y)), "val": int(len(ds.val_y)),
            "shape": list(ds.train_x.shape[1:]), "fingerprint": h.hexdigest()[:16]}


def identity(space: SearchSpace, cfg: SupernetConfig, ds: Dataset) -> dict[str, Any]:
    t = cfg.eval.train
    data = {**data_identity(ds, cfg.eval.data), "holdout": getattr(cfg.eval, "holdout", None)}
    return {"space": space.name, "space_hash": space.content_hash, "data": data,
            "proxy": {k: v for k, v in t.to_dict().items() if k != "seed"}, "train_images": cfg.train_images,
            "seed": t.seed, "budget": cfg.budget.text or "", "steps": cfg.steps, "sampling": SAMPLING}


def locate(space: SearchSpace, cfg: SupernetConfig, folder: str | Path,
           ds: Dataset | None = None) -> tuple[torch.device, Dataset, dict[str, Any], Path]:
    """``cfg`` checked, then the device, the data (``ds``, else loaded), the supernet's identity
    and the path of its checkpoint in ``folder``."""
    cfg.check()
    dev = resolve_device(cfg.eval.device)
    ds = ds if ds is not None else load_data(cfg)
    ident = identity(space, cfg, ds)
    return dev, ds, ident, checkpoint_path(folder, space.name, ident)


def sample_arch(space: SearchSpace, budget: Budget, rng: random.Random) -> ArchSpec:
    """One architecture, uniform over each stage's operator families, within ``budget``'s MACs and params."""
    for _ in range(MAX_DRAWS):
        choices = []
        for st in space.stages:
            families = list(dict.fromkeys(o.name for o in st.ops))
            family = rng.choice(families)
            op = rng.choice([o for o in st.ops if o.name == family])
            choices.append((op, rng.choice(st.depths), rng.choice(st.widths)))
        arch = space.make_arch(choices)
        if budget.is_empty:
            return arch
        cost = estimate_cost(arch)
        if not budget.violations(macs=cost.macs, params=cost.params):
            return arch
    raise UsageError(f"the budget {budget.text!r} leaves almost no architecture of {space.name} "
                     f"(none in {MAX_DRAWS:,} draws): loosen it")


@contextlib.contextmanager
def step_bar(total: int, *, initial: int = 0, desc: str = "supernet",
             show: bool = True) -> Iterator[Callable[[int, int, float], None]]:
    """A tqdm bar of supernet steps on a terminal's stderr (nothing elsewhere), as the ``progress``
    callback :func:`train_supernet` takes; closed on the way out."""
    bar = None
    if show and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=sys.stderr)

    def progress(step: int, _total: int, loss: float) -> None:
        if bar is not None:
            bar.n = step
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.refresh()
    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def lr_at(step: int, total: int, lr: float, schedule: str) -> float:
    """:mod:`nasconv.train`'s schedules over the supernet's steps."""
    t = step / max(1, total)
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * t))
    if t < 0.25:
        return lr * (0.1 + 0.9 * t / 0.25)
    return lr * 0.5 * (1 + math.cos(math.pi * (t - 0.25) / 0.75))


def make_optimizer(net: torch.nn.Module, cfg: SupernetConfig) -> torch.optim.Optimizer:
    t = cfg.eval.train
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr)
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=True)


@dataclass
class TrainOutcome:
    path: Path
    step: int
    steps: int
    train_time_s: float
    last_loss: float
    finished: bool
    losses: list[list[float]]


def train_supernet(space: SearchSpace, cfg: SupernetConfig, folder: str | Path, *, ds: Dataset | None = None,
                   max_steps: int | None = None, time_limit_s: float | None = None, restart: bool = False,
                   progress: Callable[[int, int, float], None] | None = None,
                   clock: Callable[[], float] = time.monotonic) -> TrainOutcome:
    """Train (or go on training) the supernet of ``space`` with ``cfg``, checkpointed in ``folder``.

    Stops after ``cfg.steps`` steps in all, or earlier after ``max_steps`` steps of this call or
    ``time_limit_s`` seconds, writing a checkpoint then (a later call resumes it); also on Ctrl-C
    and SIGTERM, before re-raising. ``restart`` ignores (and replaces) an existing checkpoint.
    """
    dev, ds, ident, path = locate(space, cfg, folder, ds)
    t = cfg.eval.train
    proxy = ProxySettings.of(t, ds.num_classes)
    check_fits(estimate_memory(space, proxy, batch_size=t.batch_size, seed=t.seed), space.name, str(dev))
    net = Supernet(space, proxy, seed=t.seed).to(dev)
    opt = make_optimizer(net, cfg)
    step, spent, losses = 0, 0.0, []
    if path.exists() and not restart:
        state = read_checkpoint(path, ident)
        load_weights(net, state["model"])
        opt.load_state_dict(state["optimizer"])
        step, spent, losses = int(state["step"]), float(state["train_time_s"]), list(state["losses"])
    x_train, y_train, _, _ = prepare_split(ds, cfg.train, space.in_channels)

    def save() -> None:
        save_checkpoint(path, {"identity": ident, "step": step, "train_time_s": spent, "losses": losses,
                               "model": net.state_dict(), "optimizer": opt.state_dict()})

    batch = t.batch_size
    per_epoch = max(1, len(x_train) // batch)
    anneal = max(1, int(cfg.steps * t.temperature_anneal_fraction))
    end = cfg.steps if max_steps is None else min(cfg.steps, step + max_steps)
    start, last_save = clock(), clock()
    order: tuple[int, torch.Tensor] | None = None
    pending: list[tuple[int, torch.Tensor]] = []
    last_loss = losses[-1][1] if losses else float("nan")
    net.train()
    try:
        while step < end and (time_limit_s is None or clock() - start < time_limit_s):
            epoch, b = divmod(step, per_epoch)
            if order is None or order[0] != epoch:
                gen = torch.Generator().manual_seed(t.seed * 1_000_003 + epoch)
                order = (epoch, torch.randperm(len(x_train), generator=gen))
            idx = order[1][b * batch:(b + 1) * batch]
            xb, yb = x_train[idx].to(dev), y_train[idx].to(dev)
            arch = sample_arch(space, cfg.budget, random.Random(f"{t.seed}:{step}"))
            sub = net.subnet(arch)
            if any(s.op.name == "dynconv" for s in arch.stages):
                frac = min(1.0, step / anneal)
                set_temperature(sub, t.temperature_start + frac * (t.temperature_end - t.temperature_start))
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.steps, t.lr, t.schedule)
            with autocast(t.precision, dev):
                loss = F.cross_entropy(sub(xb), yb, label_smoothing=t.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            pending.append((step, loss.detach()))
            if step % CHECK_EVERY == 0 or step == end:
                read = [(s, float(v)) for s, v in pending]
                pending = []
                bad = next((s for s, v in read if not math.isfinite(v)), None)
                if bad is not None:
                    raise SupernetDivergedError(f"the {space.name} supernet's loss diverged at step {bad}; the last "
                                                f"checkpoint ({path}) is kept: lower --lr or --restart")
                last_loss = read[-1][1]
                if step % CHECK_EVERY == 0 or step == cfg.steps:  # where an uninterrupted run logs too
                    losses.append([step, last_loss])
            if progress is not None:
                progress(step, cfg.steps, last_loss)
            now = clock()
            if now - last_save >= cfg.checkpoint_every_s:
                spent += now - start
                start = last_save = now
                save()
    except (KeyboardInterrupt, Terminated):
        spent += clock() - start
        save()
        raise
    spent += clock() - start
    save()
    return TrainOutcome(path, step, cfg.steps, spent, last_loss, step >= cfg.steps, losses)
