"""A search fitted to its data: the head's class count, the metric and the proxy's length come from
the dataset it runs on, and a stored study keeps what it was made with.

:func:`bind_task` reads the data once, before anything is stored (a bad folder is one line and
nothing written), and returns the settings a new study gets:

* the space with the data's class count (every sampled architecture, its exact cost, the budget
  check and the export then have the head of the network trained);
* ``balanced-accuracy`` when the search was left to choose and the held-out classes differ in
  size by more than 2x (:mod:`nasconv.data.task`);
* the proxy's length by :func:`proxy_length` when the search was left to choose.

:func:`keep_stored_head` then keeps the space a stored study was made with when that study
predates the binding (a 10-class head on other data): its trials' costs stay what they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from nasconv.data import load_dataset
from nasconv.data.task import TaskSummary, describe_task
from nasconv.evaluate import EvalConfig

#: the class count the proxy's default length was measured on (CIFAR-10, Fashion-MNIST)
CALIBRATED_CLASSES = 10
#: the proxy never trains more than this many times its 10-class length (100 classes)
MAX_LENGTH_FACTOR = 10.0
#: a baseline within this many standard errors of the majority-class rate learnt too little
TOO_SHORT_SE = 3.0


@dataclass(frozen=True)
class ProxyLength:
    train_images: int
    epochs: int
    val_images: int | None
    factor: float
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"train_images": self.train_images, "epochs": self.epochs, "val_images": self.val_images,
                "factor": self.factor, "rule": self.rule}


def proxy_length(base_images: int, base_val: int | None, num_classes: int, n_train: int) -> ProxyLength:
    """The proxy's length for ``num_classes`` classes and ``n_train`` training images.

    The default (``base_images`` images, 1 epoch) was chosen on 10-class data, where it shows the
    network about 800 images per class. Keeping that per-class exposure for ``K`` classes means
    ``base * K / 10`` images (at least ``base``, at most :data:`MAX_LENGTH_FACTOR` times it); where
    the training split has fewer, the proxy trains that many epochs over as much of it as needed.
    The held-out sample grows by the same factor, so that each class keeps about as many held-out
    images (its recall's noise) as at 10 classes.
    """
    factor = min(MAX_LENGTH_FACTOR, max(1.0, num_classes / CALIBRATED_CLASSES))
    seen = int(math.ceil(base_images * factor))
    epochs = max(1, math.ceil(seen / max(1, n_train)))
    images = int(math.ceil(seen / epochs))
    val = None if base_val is None else int(math.ceil(base_val * factor))
    rule = (f"{base_images:,} images x max(1, {num_classes} classes / {CALIBRATED_CLASSES}) = {seen:,} images seen"
            + (f" ({epochs} epochs of {images:,})" if epochs > 1 else ""))
    return ProxyLength(images, epochs, val, factor, rule)


@dataclass(frozen=True)
class TaskBinding:
    summary: TaskSummary
    space: Any
    eval: EvalConfig
    proxy_length: ProxyLength | None


def bind_task(eval_cfg: EvalConfig, space: Any, *, choose_metric: bool, size_proxy: bool) -> TaskBinding:
    """Read the data of ``eval_cfg`` and fit the space and settings to it (module docstring)."""
    verify = getattr(space, "verify_files", None)  # a model space's starting weights, read again now
    if verify is not None:
        verify()
    ds = load_dataset(eval_cfg.data, data_dir=eval_cfg.data_dir, seed=eval_cfg.train.seed,
                      cache_dir=eval_cfg.cache_dir, holdout=eval_cfg.holdout)
    summary = describe_task(ds, eval_cfg.data, holdout=eval_cfg.holdout, train_resolution=eval_cfg.train.resolution,
                            metric=None if choose_metric else eval_cfg.metric)
    cfg = replace(eval_cfg, metric=summary.metric)
    length = None
    if size_proxy and eval_cfg.proxy == "train":
        length = proxy_length(cfg.train.train_images, cfg.train.val_images, ds.num_classes, len(ds.train_y))
        cfg = replace(cfg, train=replace(cfg.train, train_images=length.train_images, epochs=length.epochs,
                                         val_images=length.val_images))
    bound = space if space.num_classes == ds.num_classes else replace(space, num_classes=ds.num_classes)
    return TaskBinding(summary, bound, cfg, length)


def keep_stored_head(attrs: dict[str, Any], unbound: Any, bound: Any) -> tuple[Any, str | None]:
    """The space to resume a stored study with (its user attributes ``attrs``): one made before
    the head followed the data keeps the space's own class count, with a note saying why."""
    if unbound is bound or not attrs.get("space_hash"):
        return bound, None
    if attrs["space_hash"] == unbound.content_hash and attrs["space_hash"] != bound.content_hash:
        return unbound, (f"note: this study was made with a {unbound.num_classes}-class head while the data has "
                         f"{bound.num_classes} classes; it keeps that head's params and MACs so that its trials stay "
                         "comparable (the networks it trained had the data's head); a new study costs the "
                         "network trained")
    return bound, None


def proxy_too_short(baseline: dict[str, Any] | None, summary: TaskSummary | None,
                    eval_cfg: EvalConfig) -> str | None:
    """One line when the baseline's accuracy is within :data:`TOO_SHORT_SE` standard errors of what
    always predicting the largest class scores: the proxy then ranks noise."""
    if not baseline or summary is None or baseline.get("accuracy") is None:
        return None
    acc, se = float(baseline["accuracy"]), baseline.get("accuracy_se")
    if se is None or not math.isfinite(float(se)) or acc - summary.chance_rate >= TOO_SHORT_SE * float(se):
        return None
    what = "the majority-class rate" if summary.metric == "accuracy" else "chance (1/classes)"
    longer = eval_cfg.train.train_images * 3
    return (f"warning: the proxy is too short for this data: the baseline's {summary.metric} {acc:.3f} +- "
            f"{float(se):.3f} is within {TOO_SHORT_SE:g} SE of {what} {summary.chance_rate:.3f}, so candidates "
            f"are ranked on noise; lengthen it with --train-images {longer} (or --epochs) in a new --study")


def stored_attrs(storage: Any, name: str) -> dict[str, Any]:
    """The user attributes of study ``name`` in ``storage`` (an Optuna storage), ``{}`` when none."""
    import optuna

    try:
        if name not in optuna.study.get_all_study_names(storage):
            return {}
        return dict(optuna.load_study(study_name=name, storage=storage, sampler=None).user_attrs)
    except Exception:  # the study's own opening says what is wrong with the storage
        return {}


def stamp_task(study: Any, task: TaskBinding) -> None:
    """Store what was read (and the proxy length chosen) in the study's settings, once: a study
    resumed keeps the record of what it was made on."""
    if "data" not in study.user_attrs:
        study.set_user_attr("data", task.summary.to_dict())
    if task.proxy_length is not None and "proxy_length" not in study.user_attrs:
        study.set_user_attr("proxy_length", task.proxy_length.to_dict())
