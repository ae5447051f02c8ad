"""What a search or evaluation reads: the task a dataset poses, in one line, and how it is scored.

:func:`describe_task` sums a loaded dataset up (classes, images per split, which folder or split is
held out, stored and training resolution, class sizes) as a :class:`TaskSummary`, whose
:meth:`~TaskSummary.line` a search and ``evaluate`` print first and a study stores. It also
decides the metric: ``accuracy`` or ``balanced-accuracy`` (the mean of the per-class recalls),
the latter by default when the held-out split's classes differ in size by more than
:data:`IMBALANCE_RATIO` (there, plain accuracy rewards predicting the large classes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from nasconv.data.dataset import Dataset
from nasconv.errors import DataError, UnknownNameError

METRICS = ("accuracy", "balanced-accuracy")
#: held-out classes whose sizes differ by more than this factor: balanced accuracy by default
IMBALANCE_RATIO = 2.0
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class TaskSummary:
    """A dataset as a search sees it; :meth:`line` is the one line printed and stored."""

    data: str
    num_classes: int
    channels: int
    n_train: int
    n_val: int
    #: what is held out, in words ("val/", "test/ (the test split)", "0.1 of each class of train/")
    held_out: str
    #: whether the held-out images are a test split (selection then happens on it)
    test_split: bool
    stored_size: tuple[int, int]
    train_resolution: int | None
    train_counts: tuple[int, ...]
    val_counts: tuple[int, ...]
    metric: str
    #: why the metric is what it is
    metric_reason: str
    #: the folder name ``test/`` was held out (the warning names ``--holdout``)
    test_folder: bool = False
    classes: tuple[str, ...] = ()

    @property
    def imbalance(self) -> float:
        """Largest over smallest held-out class (inf when a class has none)."""
        lo = min(self.val_counts)
        return math.inf if lo == 0 else max(self.val_counts) / lo

    @property
    def majority_rate(self) -> float:
        """The accuracy of always predicting the largest held-out class."""
        return max(self.val_counts) / max(1, self.n_val)

    @property
    def chance_rate(self) -> float:
        """The metric's value for a network that always predicts the largest class."""
        return self.majority_rate if self.metric == "accuracy" else 1 / self.num_classes

    def line(self) -> str:
        h, w = self.stored_size
        res = f", trained at {self.train_resolution}x{self.train_resolution}" if self.train_resolution else ""
        lo_t, hi_t = min(self.train_counts), max(self.train_counts)
        lo_v, hi_v = min(self.val_counts), max(self.val_counts)
        return (f"data: {self.data}: {self.num_classes} classes, {self.channels} channel(s); "
                f"{self.n_train:,} train images ({lo_t:,}-{hi_t:,} per class), "
                f"{self.n_val:,} held out ({lo_v:,}-{hi_v:,} per class): {self.held_out}; "
                f"stored {h}x{w}{res}; metric {self.metric} ({self.metric_reason})")

    def warnings(self) -> list[str]:
        if not self.test_folder:
            return []
        return ["warning: the held-out split is the folder test/ (there is no val/), so architectures are "
                "selected on the test split and its accuracy no longer estimates unseen data; --holdout 0.1 "
                "holds out 10% of each class of train/ instead and leaves test/ unread"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["line"] = self.line()
        return d


def describe_task(ds: Dataset, data: str, *, holdout: float | None = None, train_resolution: int | None = None,
                  metric: str | None = None) -> TaskSummary:
    """The summary of ``ds`` (loaded from spec ``data``, ``holdout`` as given to ``load_dataset``);
    ``metric`` None or ``auto``: balanced accuracy when held-out classes differ by more than 2x."""
    val_counts = _counts(ds.val_y, ds.num_classes)
    train_counts = _counts(ds.train_y, ds.num_classes)
    empty = [ds.classes[i] for i, n in enumerate(val_counts) if n == 0]
    if empty and len(ds.val_y):
        raise DataError(f"{data}: class {empty[0]!r} has no image in the held-out split"
                        + (f" ({len(empty)} classes have none)" if len(empty) > 1 else "")
                        + "; each class needs at least one (two images per class, or a val/ image each)")
    held_out, test_split, test_folder = _held_out(ds, data, holdout)
    lo = min(val_counts)
    ratio = math.inf if lo == 0 else max(val_counts) / lo
    if metric in (None, "auto"):
        metric = "balanced-accuracy" if ratio > IMBALANCE_RATIO else "accuracy"
        reason = (f"held-out classes differ {ratio:.1f}x, more than {IMBALANCE_RATIO:g}x"
                  if metric == "balanced-accuracy" else f"held-out classes within {IMBALANCE_RATIO:g}x")
        reason += "; --metric sets it"
    else:
        check_metric(metric)
        reason = "--metric"
    return TaskSummary(data=data, num_classes=ds.num_classes, channels=ds.channels, n_train=len(ds.train_y),
                       n_val=len(ds.val_y), held_out=held_out, test_split=test_split,
                       stored_size=ds.image_size, train_resolution=train_resolution,
                       train_counts=train_counts, val_counts=val_counts, metric=metric, metric_reason=reason,
                       test_folder=test_folder, classes=tuple(ds.classes))


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise UnknownNameError("metric", metric, METRICS)


def _counts(y: torch.Tensor, k: int) -> tuple[int, ...]:
    return tuple(int(v) for v in torch.bincount(y, minlength=k).tolist())


def _held_out(ds: Dataset, data: str, holdout: float | None) -> tuple[str, bool, bool]:
    """(what is held out, whether it is a test split, whether it is a folder named test/)."""
    kind, _, arg = data.strip().partition(":")
    kind = kind.lower()
    if kind == "imagefolder":
        root = Path(arg).expanduser()
        if holdout is not None:
            return f"{holdout:g} of each class of train/ (val/ and test/ not read)", False, False
        if (root / "train").is_dir():
            for name in ("val", "test"):
                if (root / name).is_dir():
                    if name == "test":
                        return "the folder test/ (the test split)", True, True
                    return "the folder val/", False, False
        return "a fraction of each class folder", False, False
    if kind.startswith("cifar") or kind.startswith("fashion"):
        return "the official test split", True, False
    return "a random part of each class", False, False


def balanced_accuracy(correct: Sequence[int], total: Sequence[int]) -> tuple[float, float, list[float]]:
    """Mean per-class recall, its standard error and 95% interval, from per-class counts.

    The classes' recalls are independent binomial proportions, so Var = sum_k r_k(1-r_k)/n_k / K^2.
    Each r_k in the variance is the add-one estimate (c+1)/(n+2): a class recalled perfectly (or not
    at all) on a few images still carries its sampling noise instead of a variance of zero.
    Classes with no held-out image are left out (a folder where one has none is refused before).
    """
    rows = [(c, n) for c, n in zip(correct, total) if n > 0]
    if not rows:
        return 0.0, math.inf, [0.0, 1.0]
    k = len(rows)
    ba = sum(c / n for c, n in rows) / k
    var = sum(((c + 1) / (n + 2)) * (1 - (c + 1) / (n + 2)) / n for c, n in rows) / k ** 2
    se = math.sqrt(var)
    return ba, se, [max(0.0, ba - _Z95 * se), min(1.0, ba + _Z95 * se)]


def spec_class_count(data: str, holdout: float | None = None) -> int | None:
    """The class count of dataset ``data`` found without decoding anything (a CIFAR's is fixed, an
    image folder's is its class folders); None where it would take loading or downloading."""
    from nasconv.data.imagefolder import scan_imagefolder

    kind, _, arg = data.strip().partition(":")
    kind = kind.lower()
    if kind == "cifar100":
        return 100
    if kind == "cifar10" or kind.startswith("fashion"):
        return 10
    if kind == "imagefolder" and arg:
        try:
            return len(scan_imagefolder(Path(arg).expanduser(), holdout=holdout is not None).classes)
        except Exception:  # the folder moved or changed: the caller keeps what it has
            return None
    return None
