"""Choosing images by class: random stratified subsets and the held-out validation split."""

from __future__ import annotations

import operator

import torch

from nasconv.data.dataset import Dataset
from nasconv.errors import UsageError


def subset(ds: Dataset, n_train: int | None, n_val: int | None, seed: int) -> Dataset:
    """A random subset of ``ds`` with ``n_train``/``n_val`` images (``None``: all of them).

    Classes keep their proportions (to within one image) and the same ``seed`` picks the same
    images. Asking for more images than there are gives all of them. ``mean``/``std`` stay those
    of the full dataset so that a subset is normalised like the whole.
    """
    picks = []
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 1)):
        y: torch.Tensor = getattr(ds, f"{split}_y")
        if n is not None:
            try:
                n = operator.index(n)  # numpy integers too, but not 2.5
            except TypeError:
                raise UsageError(f"n_{split} must be an integer or None, got {n!r}") from None
            if n < 0:
                raise UsageError(f"n_{split} must be non-negative, got {n}")
        if n is None or n >= len(y):
            picks.append(None)
        else:
            picks.append(_stratified_pick(y, n, ds.num_classes, seed * 2 + offset))
    (tr, va) = picks
    if tr is None and va is None:
        return ds
    return Dataset(
        name=ds.name,
        train_x=ds.train_x if tr is None else ds.train_x[tr],
        train_y=ds.train_y if tr is None else ds.train_y[tr],
        val_x=ds.val_x if va is None else ds.val_x[va],
        val_y=ds.val_y if va is None else ds.val_y[va],
        num_classes=ds.num_classes,
        classes=ds.classes,
        source=f"{ds.source} (subset n_train={n_train}, n_val={n_val}, seed={seed})",
        mean=ds.mean,
        std=ds.std,
    )


def _stratified_pick(y: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` labels, classes in proportion, chosen at random but fixed by ``seed``.

    Each index gets the key (rank within its class in a random order) / (class size); taking
    the ``n`` smallest keys interleaves the classes in proportion to their sizes.
    """
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=gen)
    labels = y[perm]
    key = torch.empty(len(y), dtype=torch.float64)
    for c in range(num_classes):
        where = (labels == c).nonzero(as_tuple=True)[0]
        if len(where):
            key[where] = (torch.arange(len(where), dtype=torch.float64) + 0.5) / len(where)
    order = torch.sort(key, stable=True).indices[:n]
    return torch.sort(perm[order]).values


def holdout_split(
    y: torch.Tensor, num_classes: int, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, hold out ``round(n * val_fraction)`` images (at least one while two are left)."""
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in range(num_classes):
        idx = (y == c).nonzero(as_tuple=True)[0]
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = round(len(idx) * val_fraction)
        if val_fraction > 0 and len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values
