"""Synthetic images with a class signal, for smoke tests only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasconv.data.dataset import Dataset
from nasconv.data.splits import holdout_split
from nasconv.errors import UsageError

DEFAULT_SYNTHETIC_SIZE = 2000


def parse_count(arg: str, spec: str) -> int:
    try:
        n = int(arg)
    except ValueError:
        n = -1
    if n < 20:
        raise UsageError(f"synthetic:N needs an integer N >= 20 (images in all), got {spec!r}")
    return n


def make_synthetic(n: int, val_fraction: float, seed: int) -> Dataset:
    """Ten classes of 3x32x32 noise, each with its own fixed low-frequency pattern.

    The pattern is strong enough that a small CNN learns it in a few hundred steps, weak enough
    that a broken training loop stays near chance: a smoke test can tell the two apart.
    """
    num_classes = 10
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, 3, 4, 4, generator=gen)
    patterns = F.interpolate(patterns, size=(32, 32), mode="bilinear", align_corners=False)
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=gen)]
    noise = torch.randn(n, 3, 32, 32, generator=gen)
    x = (128.0 + 40.0 * patterns[y] + 40.0 * noise).round().clamp(0, 255).to(torch.uint8)
    tr, va = holdout_split(y, num_classes, val_fraction, seed)
    return Dataset(
        name=f"synthetic:{n}",
        train_x=x[tr], train_y=y[tr], val_x=x[va], val_y=y[va],
        num_classes=num_classes,
        classes=tuple(f"class{i}" for i in range(num_classes)),
        source=f"synthetic: random images with a class signal, seed {seed} (smoke tests only, not real data)",
    )
