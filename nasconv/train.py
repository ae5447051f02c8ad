"""Brief-training proxy: train a (reduced) copy of a candidate for a few hundred steps on real images.

Deterministic for a seed: the same data subset, order and initialisation. A loss that turns NaN
or infinite ends training and is reported as ``diverged`` with its step, never raised.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasconv.arch import ArchSpec
from nasconv.build import build_model
from nasconv.cost import estimate_cost
from nasconv.data import Dataset, prepare_batch, subset
from nasconv.errors import HyperparameterError, UsageError
from nasconv.ops import set_temperature

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """How a candidate is briefly trained. Defaults: 10-25 s for a reduced ResNet-50 on 2 CPU cores."""

    #: 8,000 (125 steps of 64): ranks resnet20 architectures like 16,000 did (rho 0.90 vs 0.92
    #: against a 10x longer training, benchmarks/proxy_fidelity.py) at half the time
    train_images: int = 8000
    #: None: the whole held-out split (a multi-fidelity search's top rung)
    val_images: int | None = 2000
    epochs: int = 1
    batch_size: int = 64
    resolution: int = 28
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.05
    schedule: str = "onecycle"
    label_smoothing: float = 0.1
    #: the proxy trains a reduced copy: at most this many blocks per stage (None: all) ...
    max_depth: int | None = 1
    #: ... and this fraction of each stage's width, where the stage's operators allow it
    width_factor: float = 0.5
    #: replace an ImageNet stem (7x7/2 conv + 3x3/2 max-pool) by one 3x3/2 conv: at the proxy's
    #: small resolution the ImageNet stem would leave 1x1 maps in the last stage
    small_stem: bool = True
    #: dynamic-kernel softmax temperature, annealed linearly over the first part of training
    temperature_start: float = 30.0
    temperature_end: float = 1.0
    temperature_anneal_fraction: float = 0.5
    seed: int = 0

    def check(self) -> None:
        for key in ("train_images", "val_images", "epochs", "batch_size", "resolution"):
            if key == "val_images" and self.val_images is None:
                continue
            if getattr(self, key) < 1:
                raise UsageError(f"training {key} must be >= 1, got {getattr(self, key)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not (0 < self.width_factor <= 1):
            raise UsageError(f"width_factor must be in (0, 1], got {self.width_factor}")
        if self.max_depth is not None and self.max_depth < 1:
            raise UsageError(f"max_depth must be >= 1 or None, got {self.max_depth}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    accuracy: float
    val_loss: float
    train_loss: float
    steps: int
    train_time_s: float
    diverged: bool = False
    diverged_step: int | None = None
    proxy_params: int = 0
    proxy_macs: int = 0
    #: the trained network, when ``train_candidate(..., keep_model=True)``
    model: Any = None
    #: validation images the accuracy was measured on (its binomial standard error follows)
    val_images: int = 0


def reduced_copy(arch: ArchSpec, *, max_depth: int | None, width_factor: float, resolution: int,
                 num_classes: int, in_channels: int, small_stem: bool = False) -> ArchSpec:
    """Same operators per stage, fewer blocks and narrower where each operator still fits.

    A stage keeps its full width when its operator's hyperparameters do not divide the
    narrower one (e.g. ``gc`` G=32 on 16 channels), so every candidate has a valid proxy.
    """
    if small_stem and arch.stem == "imagenet":
        arch = replace(arch, stem="small", stem_width=max(8, int(arch.stem_width * width_factor)))
    stages = list(arch.stages)
    for i, st in enumerate(stages):
        depth = st.depth if max_depth is None else min(st.depth, max_depth)
        stages[i] = replace(st, depth=depth)
        narrow = max(1, int(round(st.width * width_factor)))
        if narrow == st.width:
            continue
        # The whole network is checked: a narrower stage changes the next stage's input channels.
        trial = replace(arch, stages=tuple(stages[:i] + [replace(stages[i], width=narrow)] + stages[i + 1:]))
        try:
            estimate_cost(trial, resolution, num_classes=num_classes, in_channels=in_channels)
        except HyperparameterError:
            continue
        stages[i] = replace(stages[i], width=narrow)
    return replace(arch, stages=tuple(stages))


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on norms and biases
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    t = step / max(1, total)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    warm = 0.25  # one-cycle: linear warm-up, then cosine down to ~0
    if t < warm:
        return cfg.lr * (0.1 + 0.9 * t / warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))


def prepare_split(ds: Dataset, cfg: TrainConfig, channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                           torch.Tensor]:
    """Float tensors at the proxy resolution, converted once (not per step)."""
    small = subset(ds, cfg.train_images, cfg.val_images, cfg.seed)
    mean_std = (small.mean, small.std) if small.mean else None
    conv = lambda x: prepare_batch(x, channels=channels, resolution=cfg.resolution, mean_std=mean_std)  # noqa: E731
    return conv(small.train_x), small.train_y, conv(small.val_x), small.val_y


def train_candidate(arch: ArchSpec, ds: Dataset, cfg: TrainConfig, *,
                    progress: Callable[[int, int, float], None] | None = None,
                    device: str | torch.device = "cpu", keep_model: bool = False) -> TrainResult:
    """Briefly train a reduced copy of ``arch`` on ``ds`` and return its validation accuracy."""
    cfg.check()
    channels = arch.in_channels
    proxy = reduced_copy(arch, max_depth=cfg.max_depth, width_factor=cfg.width_factor,
                         resolution=cfg.resolution, num_classes=ds.num_classes, in_channels=channels,
                         small_stem=cfg.small_stem)
    cost = estimate_cost(proxy, cfg.resolution, num_classes=ds.num_classes, in_channels=channels)
    x_train, y_train, x_val, y_val = prepare_split(ds, cfg, channels)
    torch.manual_seed(cfg.seed)
    model = build_model(proxy, num_classes=ds.num_classes).to(device)
    opt = _make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, len(x_train) // cfg.batch_size)  # drop the ragged last batch: BN needs > 1
    total = steps_per_epoch * cfg.epochs
    anneal_steps = max(1, int(total * cfg.temperature_anneal_fraction))
    has_dynamic = set_temperature(model, cfg.temperature_start) > 0
    step, loss_value = 0, float("nan")
    t0 = time.perf_counter()
    model.train()
    for _epoch in range(cfg.epochs):
        order = torch.randperm(len(x_train), generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, cfg)
            if has_dynamic:
                frac = min(1.0, step / anneal_steps)
                set_temperature(model, cfg.temperature_start + frac * (cfg.temperature_end - cfg.temperature_start))
            loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                return TrainResult(0.0, float("nan"), loss_value, step, time.perf_counter() - t0, True, step,
                                   cost.params, cost.macs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if progress is not None:
                progress(step, total, loss_value)
    accuracy, val_loss = evaluate_accuracy(model, x_val, y_val, device=device)
    elapsed = time.perf_counter() - t0
    if not math.isfinite(val_loss):
        return TrainResult(0.0, val_loss, loss_value, step, elapsed, True, step, cost.params, cost.macs,
                           val_images=len(x_val))
    return TrainResult(accuracy, val_loss, loss_value, step, elapsed, False, None, cost.params, cost.macs,
                       model.cpu() if keep_model else None, val_images=len(x_val))


@torch.inference_mode()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500,
                      device: str | torch.device = "cpu") -> tuple[float, float]:
    model.eval()
    correct, loss_sum = 0, 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        logits = model(xb)
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return correct / len(x), loss_sum / len(x)
