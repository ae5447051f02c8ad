"""The dataset type: uint8 images, int64 labels and the train split's channel statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from nasconv.errors import DataError


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset. Images are uint8 ``N x C x H x W``; labels int64 in ``[0, num_classes)``.

    ``mean`` and ``std`` are per channel, in units of ``pixel / 255``, computed on the train
    split, for ``prepare_batch(..., mean_std=(ds.mean, ds.std))``. Tensors are shared with the
    process cache of :func:`load_dataset`, and the images of every dataset but ``synthetic`` are
    a copy-on-write memory map of its data cache file (pages shared between processes): never
    modify them in place.
    """

    name: str
    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    val_x: torch.Tensor = field(repr=False)
    val_y: torch.Tensor = field(repr=False)
    num_classes: int
    classes: tuple[str, ...] = field(repr=False)
    source: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            x: torch.Tensor = getattr(self, f"{split}_x")
            y: torch.Tensor = getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DataError(f"{self.name}: {split}_x must be uint8 N x C x H x W, "
                                f"got {x.dtype} of shape {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DataError(f"{self.name}: {split}_y must be int64 of shape ({x.shape[0]},), "
                                f"got {y.dtype} of shape {tuple(y.shape)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(f"{self.name}: {split} labels must lie in [0, {self.num_classes}), "
                                f"got [{int(y.min())}, {int(y.max())}]")
        if self.train_x.shape[1:] != self.val_x.shape[1:] and self.val_x.shape[0]:
            raise DataError(f"{self.name}: train images are {tuple(self.train_x.shape[1:])} "
                            f"but val images are {tuple(self.val_x.shape[1:])}")
        if len(self.classes) != self.num_classes:
            raise DataError(f"{self.name}: {len(self.classes)} class names for {self.num_classes} classes")
        if not self.mean:
            # Frozen: computed defaults have to go through object.__setattr__.
            mean, std = _channel_stats(self.train_x)
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    def __repr__(self) -> str:
        c, h, w = self.train_x.shape[1:]
        return (f"Dataset({self.name!r}, train={len(self.train_y)}, val={len(self.val_y)}, "
                f"{c}x{h}x{w}, classes={self.num_classes}, source={self.source!r})")


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std of uint8 images from a 256-bin histogram, in pixel/255 units.

    A histogram needs no float copy of the images (60k x 784 floats would be 190 MB).
    """
    if x.shape[0] == 0:
        return (0.0,) * x.shape[1], (1.0,) * x.shape[1]
    return stats_from_histograms([torch.bincount(x[:, c].reshape(-1), minlength=256).double()
                                  for c in range(x.shape[1])])


def stats_from_histograms(hists: Sequence[Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` in pixel/255 units from one 256-bin histogram per channel (torch
    or numpy), so that statistics computed in chunks match :class:`Dataset`'s to the last bit."""
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for h in hists:
        hist = torch.as_tensor(h, dtype=torch.float64)
        total = hist.sum()
        if float(total) == 0:
            means.append(0.0)
            stds.append(1.0)
            continue
        mean = float((hist * levels).sum() / total)
        var = float((hist * (levels - mean) ** 2).sum() / total)
        means.append(mean)
        # A constant channel would divide by zero when normalising.
        stds.append(max(var ** 0.5, 1e-6))
    return tuple(means), tuple(stds)
