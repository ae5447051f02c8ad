"""Brief-training proxy: train a (reduced) copy of a candidate for a few hundred steps on real images.

Deterministic for a seed: the same data subset, order, augmentation and initialisation. A loss that
turns NaN or infinite ends training and is reported as ``diverged`` with the step where it first
appeared, never raised.

The loop keeps the device busy: the losses stay on the device and are read back every
:data:`CHECK_EVERY` steps (where divergence is checked) and at the end, not after every step; on
CUDA each batch is gathered into pinned host memory and copied without blocking, one step ahead of
its use. Forward pass, loss and the validation pass run in the training precision
(:mod:`nasconv.precision`); the weights and the optimizer stay in fp32.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, ContextManager, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from nasconv.arch import ArchSpec
from nasconv.build import build_model
from nasconv.cost import estimate_cost
from nasconv.data import Dataset, prepare_batch, subset
from nasconv.errors import HyperparameterError, UsageError
from nasconv.ops import set_temperature
from nasconv.precision import PRECISIONS, autocast, resolve_precision
from nasconv.profile import resolve_device

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
#: training steps between two reads of the losses from the device (divergence check, progress)
CHECK_EVERY = 25
#: augmentation (``TrainConfig.augment``): a random crop of the image padded by this many pixels
AUGMENT_PAD = 4


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
    #: forward pass and loss under ``torch.autocast`` in this precision (fp32, bf16, fp16 with a
    #: gradient scaler; :mod:`nasconv.precision`); ``auto`` is resolved where a configuration is made
    precision: str = "auto"
    #: the network and its inputs in channels-last memory order (NHWC)
    channels_last: bool = False
    #: random crop (:data:`AUGMENT_PAD` px padding, at the proxy resolution) and horizontal flip of
    #: each training batch, on the training device
    augment: bool = False

    def check(self) -> None:
        for key in ("train_images", "val_images", "epochs", "batch_size", "resolution"):
            if key == "val_images" and self.val_images is None:
                continue
            if getattr(self, key) < 1:
                raise UsageError(f"training {key} must be >= 1, got {getattr(self, key)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
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
    #: the precision training ran in (``auto`` resolved)
    precision: str = "fp32"
    #: per class: held-out images predicted right, and held-out images (balanced accuracy, recall)
    class_correct: tuple[int, ...] = ()
    class_total: tuple[int, ...] = ()


def reduced_copy(arch: ArchSpec, *, max_depth: int | None, width_factor: float, resolution: int,
                 num_classes: int, in_channels: int, small_stem: bool = False) -> ArchSpec:
    """Same operators per stage, fewer blocks and narrower where each operator still fits.

    A stage keeps its full width when its operator's hyperparameters do not divide the
    narrower one (e.g. ``gc`` G=32 on 16 channels), so every candidate has a valid proxy.
    A user's own model (another ``kind``) is trained as it is: nasconv cannot shrink it.
    """
    if getattr(arch, "kind", None) is not None:
        return arch
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
                    device: str | torch.device = "cpu", keep_model: bool = False,
                    step_guard: Callable[[], ContextManager[Any]] | None = None,
                    allow_emulated: bool = False, check_every: int = CHECK_EVERY) -> TrainResult:
    """Briefly train a reduced copy of ``arch`` on ``ds`` and return its validation accuracy.

    ``progress(step, total, loss)`` is called after every step; ``loss`` is the training loss as
    last read from the device (every ``check_every`` steps, at the first and at the last), so that
    a progress display costs no synchronisation. ``step_guard()``, when given, is entered around
    each training step (forward, backward, optimizer step) and each validation batch.
    ``allow_emulated`` lets a reduced precision run where the device lacks native support
    (benchmarks measure it so; :func:`~nasconv.precision.resolve_precision`).
    """
    cfg.check()
    if check_every < 1:
        raise UsageError(f"check_every must be >= 1, got {check_every}")
    dev = resolve_device(device) if isinstance(device, str) else device
    precision = resolve_precision(cfg.precision, str(dev), allow_emulated=allow_emulated)
    channels = arch.in_channels
    proxy = reduced_copy(arch, max_depth=cfg.max_depth, width_factor=cfg.width_factor,
                         resolution=cfg.resolution, num_classes=ds.num_classes, in_channels=channels,
                         small_stem=cfg.small_stem)
    cost = estimate_cost(proxy, cfg.resolution, num_classes=ds.num_classes, in_channels=channels)
    x_train, y_train, x_val, y_val = prepare_split(ds, cfg, channels)
    torch.manual_seed(cfg.seed)
    model = build_model(proxy, num_classes=ds.num_classes).to(dev)
    if cfg.channels_last:
        _to_channels_last(model)
    opt = _make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(dev.type) if precision == "fp16" else None
    gen = torch.Generator().manual_seed(cfg.seed)
    # its own stream (seeds are < 2**32: no other seed's order stream), drawn on the device
    aug_gen = torch.Generator(device=dev).manual_seed(cfg.seed + 2**32) if cfg.augment else None
    fill = black_pixel(ds, channels).to(dev) if cfg.augment else None
    steps_per_epoch = max(1, len(x_train) // cfg.batch_size)  # drop the ragged last batch: BN needs > 1
    total = steps_per_epoch * cfg.epochs
    anneal_steps = max(1, int(total * cfg.temperature_anneal_fraction))
    has_dynamic = set_temperature(model, cfg.temperature_start) > 0
    guard = step_guard or contextlib.nullcontext
    feeder = _Feeder(x_train, y_train, cfg.batch_size, dev)
    losses = torch.full((total,), math.nan, device=dev)  # read back every check_every steps
    step, checked, loss_value = 0, 0, float("nan")
    t0 = time.perf_counter()
    model.train()
    for _epoch in range(cfg.epochs):
        order = torch.randperm(len(x_train), generator=gen)
        for xb, yb in feeder.epoch(order, steps_per_epoch):
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, cfg)
            if has_dynamic:
                frac = min(1.0, step / anneal_steps)
                set_temperature(model, cfg.temperature_start + frac * (cfg.temperature_end - cfg.temperature_start))
            if aug_gen is not None and fill is not None:
                xb = augment_batch(xb, aug_gen, fill)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with guard():
                with autocast(precision, dev):
                    loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
            losses[step] = loss.detach()
            step += 1
            if step == 1 or step % check_every == 0 or step == total:
                read = losses[checked:step].tolist()  # the one synchronisation of these steps
                bad = next((i for i, v in enumerate(read) if not math.isfinite(v)), None)
                if bad is not None:
                    # the steps after it ran on a broken network: reported as if training had stopped there
                    at = checked + bad
                    return TrainResult(0.0, float("nan"), read[bad], at, time.perf_counter() - t0, True, at,
                                       cost.params, cost.macs, precision=precision)
                checked, loss_value = step, read[-1]
            if progress is not None:
                progress(step, total, loss_value)
    class_correct, val_loss = evaluate_by_class(model, x_val, y_val, ds.num_classes, device=dev, precision=precision,
                                                channels_last=cfg.channels_last, step_guard=step_guard)
    accuracy = sum(class_correct) / len(x_val)
    class_total = tuple(int(v) for v in torch.bincount(y_val, minlength=ds.num_classes).tolist())
    elapsed = time.perf_counter() - t0
    if not math.isfinite(val_loss):
        return TrainResult(0.0, val_loss, loss_value, step, elapsed, True, step, cost.params, cost.macs,
                           val_images=len(x_val), precision=precision)
    if keep_model:
        model = model.cpu()
        for t in list(model.parameters()) + list(model.buffers()):
            t.data = t.data.contiguous()  # the ordinary layout for export
    kept = model if keep_model else None
    return TrainResult(accuracy, val_loss, loss_value, step, elapsed, False, None, cost.params, cost.macs,
                       kept, val_images=len(x_val), precision=precision, class_correct=tuple(class_correct),
                       class_total=class_total)


@torch.inference_mode()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500,
                      device: str | torch.device = "cpu", precision: str = "fp32", channels_last: bool = False,
                      step_guard: Callable[[], ContextManager[Any]] | None = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``x``, ``y``, read from the device once."""
    num_classes = int(y.max()) + 1 if len(y) else 1
    correct, loss = evaluate_by_class(model, x, y, num_classes, batch_size=batch_size, device=device,
                                      precision=precision, channels_last=channels_last, step_guard=step_guard)
    return sum(correct) / len(x), loss


@torch.inference_mode()
def evaluate_by_class(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, *, batch_size: int = 500,
                      device: str | torch.device = "cpu", precision: str = "fp32", channels_last: bool = False,
                      step_guard: Callable[[], ContextManager[Any]] | None = None) -> tuple[list[int], float]:
    """Per class, how many of ``x`` ``model`` predicts right, and the mean cross-entropy."""
    dev = torch.device(device)
    guard = step_guard or contextlib.nullcontext
    if dev.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()  # slices of a pinned tensor copy without blocking
    model.eval()
    correct = torch.zeros(num_classes, dtype=torch.int64, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)  # as a Python float summed them before
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(dev, non_blocking=True), y[i:i + batch_size].to(dev, non_blocking=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with guard():
            with autocast(precision, dev):
                logits = model(xb)
            loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum").double()
            correct += torch.bincount(yb[logits.argmax(1) == yb], minlength=num_classes)
    return [int(v) for v in correct.tolist()], float(loss_sum) / len(x)


def _to_channels_last(model: nn.Module) -> None:
    """Every 4-D weight in channels-last order (``Module.to(memory_format=...)`` refuses the 5-D
    expert banks of the dynamic operators)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.dim() == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)


# --- batches --------------------------------------------------------------------------------


def black_pixel(ds: Dataset, channels: int) -> torch.Tensor:
    """A black pixel as the network sees it (per channel, normalised like the data): what the
    augmentation's crop pads with, as a crop of a zero-padded image would have."""
    mean_std = (ds.mean, ds.std) if ds.mean else None
    zero = torch.zeros(1, int(ds.train_x.shape[1]), 1, 1, dtype=torch.uint8)
    return prepare_batch(zero, channels=channels, resolution=1, mean_std=mean_std).flatten()


def augment_batch(x: torch.Tensor, gen: torch.Generator, fill: torch.Tensor, pad: int = AUGMENT_PAD) -> torch.Tensor:
    """Each image of ``x`` (N x C x H x W) shifted by up to ``pad`` pixels each way (a random crop of
    the image padded with ``fill``, a per-channel value) and half of them flipped horizontally,
    drawn from ``gen``, on ``x``'s device, as one gather."""
    n, c, h, w = x.shape
    padded = fill.to(x.dtype).view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad:pad + h, pad:pad + w] = x
    offset = torch.randint(0, 2 * pad + 1, (2, n), generator=gen, device=x.device)
    rows = offset[0, :, None] + torch.arange(h, device=x.device)
    cols = offset[1, :, None] + torch.arange(w, device=x.device)
    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    images = torch.arange(n, device=x.device)[:, None, None]
    return padded[images, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


class _Feeder:
    """An epoch's batches on the training device. On CUDA each is gathered into one of two pinned
    host buffers and copied without blocking, one step ahead of its use: the host waits for a copy
    only before it refills that buffer, two steps later (by then long done)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device) -> None:
        self.x, self.y, self.batch_size, self.device = x, y, batch_size, device
        self.cuda = device.type == "cuda"
        self.buffers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.copied: list[Any] = [None, None]
        self.turn = 0
        if self.cuda:
            self.buffers = [(torch.empty((batch_size, *x.shape[1:]), dtype=x.dtype, pin_memory=True),
                             torch.empty(batch_size, dtype=y.dtype, pin_memory=True)) for _ in range(2)]

    def _move(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cuda:
            return self.x[idx].to(self.device), self.y[idx].to(self.device)
        k, self.turn = self.turn, 1 - self.turn
        if self.copied[k] is not None:
            self.copied[k].synchronize()
        xb, yb = self.buffers[k]
        torch.index_select(self.x, 0, idx, out=xb)
        torch.index_select(self.y, 0, idx, out=yb)
        moved = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
        self.copied[k] = torch.cuda.current_stream(self.device).record_event()
        return moved

    def epoch(self, order: torch.Tensor, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        chunks = [order[b * self.batch_size:(b + 1) * self.batch_size] for b in range(steps)]
        ahead = self._move(chunks[0])
        for b in range(steps):
            batch = ahead
            if b + 1 < steps:
                ahead = self._move(chunks[b + 1])
            yield batch
