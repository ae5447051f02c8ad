"""Evaluate one candidate: what every search worker runs. Plain data in, plain data out.

``evaluate(arch, config)`` briefly trains a reduced copy (or scores the untrained network with
a zero-cost proxy), measures latency of the full network at the space's resolution, and
returns a picklable ``dict`` of metrics, so that it can run on a remote Ray worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import torch

from nasconv._version import __version__
from nasconv.arch import ArchSpec
from nasconv.build import build_model
from nasconv.cost import estimate_cost
from nasconv.data import load_dataset, prepare_batch, subset
from nasconv.data.task import balanced_accuracy, check_metric
from nasconv.device_lock import DeviceGate
from nasconv.errors import UnknownNameError, UsageError
from nasconv.faults import fault_point, simulated_cuda
from nasconv.precision import resolve_precision
from nasconv.profile import measure_latency, pick_device, resolve_device
from nasconv.proxies import ZERO_COST_PROXIES, zero_cost_score
from nasconv.spaces import MAX_RESOLUTION
from nasconv.stats import accuracy_uncertainty
from nasconv.train import TrainConfig, train_candidate

PROXIES = ("train",) + ZERO_COST_PROXIES
#: bounds of the measurement settings: past them an evaluation tries to allocate more memory than
#: any machine has (a space's own resolution is bounded by its file's checks)
MAX_BATCH = 1024
MAX_BATCH_PIXELS = 2**26
#: settings that do not change an evaluation's result, so not part of its cache key
UNKEYED_SETTINGS = ("data_dir", "cache_dir", "threads", "latency_max_time_s")
#: training settings that came after stored studies were made, with the value every evaluation
#: had before: keyed only when another value is set, so that a stored key stays what it was
LEGACY_TRAIN_SETTINGS: dict[str, Any] = {"precision": "fp32", "channels_last": False, "augment": False}


@dataclass(frozen=True)
class EvalConfig:
    """Everything that decides an evaluation's result (and so the evaluation cache key)."""

    data: str = "fashion-mnist"
    data_dir: str | None = None
    #: where decoded datasets are cached (None: $NASCONV_CACHE_DIR, else the user cache)
    cache_dir: str | None = None
    proxy: str = "train"
    train: TrainConfig = field(default_factory=TrainConfig)
    #: ``auto``: CUDA where available, else the CPU (:meth:`resolved` says which)
    device: str = "auto"
    #: measure latency of the full network at the space's resolution (None: the arch's)
    latency: bool = True
    latency_batch: int = 1
    latency_resolution: int | None = None
    #: stop repeating once this long has passed and 10 timed runs are in, even where IQR/median is
    #: still above 5% (on a shared 2-core machine it often is, and then 15 s per candidate went on
    #: it; re-tests of 3-s medians in benchmarks/results/search_quality.md: median change 2-9%,
    #: rank correlation 0.71-0.90, the machine's own noise)
    latency_max_time_s: float = 3.0
    #: zero-cost proxies score the full, untrained network on one minibatch of this size
    zc_batch: int = 64
    #: torch threads in the evaluating process (None: leave torch's default)
    threads: int | None = None
    #: torch threads for the latency measurement alone (None: the evaluating process's). Part of
    #: the cache key when set: a 1-thread latency is another measurement than a 2-thread one. On a
    #: CPU shared with other work 1 thread is the repeatable choice (a busy core stalls every
    #: parallel region; side by side on one 2-core machine its median latency varied 2.5x less)
    latency_threads: int | None = None
    #: ``accuracy`` or ``balanced-accuracy`` (mean per-class recall): what ``accuracy``, its SE and
    #: interval, and the score are (:mod:`nasconv.data.task`); keyed when not ``accuracy``
    metric: str = "accuracy"
    #: an image folder's held-out split: this fraction of each class of ``train/`` (None: its
    #: ``val/`` or ``test/`` folder); keyed when set
    holdout: float | None = None

    def check(self) -> None:
        if self.proxy not in PROXIES:
            raise UnknownNameError("proxy", self.proxy, PROXIES)
        check_metric(self.metric)
        if self.holdout is not None and not 0.0 < self.holdout < 1.0:
            raise UsageError(f"--holdout must be a fraction in (0, 1), got {self.holdout}")
        pick_device(self.device)  # a known device name
        if not 1 <= self.latency_batch <= MAX_BATCH:
            raise UsageError(f"latency batch size must be in [1, {MAX_BATCH}], got {self.latency_batch:,}")
        for what, res in (("latency resolution", self.latency_resolution), ("resolution", self.train.resolution)):
            if res is not None and not 1 <= res <= MAX_RESOLUTION:
                raise UsageError(f"{what} must be in [1, {MAX_RESOLUTION}], got {res:,}")
        # One batch's input, whatever the network makes of it, must fit a machine's memory.
        for what, batch, res in (("latency", self.latency_batch, self.latency_resolution or 0),
                                 ("training", self.train.batch_size, self.train.resolution)):
            if batch * res * res > MAX_BATCH_PIXELS:
                raise UsageError(f"{what} batch {batch:,} at {res:,}px is {batch * res * res:,} pixels per batch, "
                                 f"more than {MAX_BATCH_PIXELS:,}; lower the batch size or the resolution")
        if not 0 <= self.train.seed < 2**32:
            raise UsageError(f"--seed must be in [0, 2**32), got {self.train.seed}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")
        if self.latency_threads is not None and self.latency_threads < 1:
            raise UsageError(f"latency threads must be >= 1, got {self.latency_threads}")
        self.train.check()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalConfig":
        """Settings stored before a field existed mean what evaluations did then (fp32 training)."""
        d = dict(d)
        d["train"] = TrainConfig(**{**LEGACY_TRAIN_SETTINGS, **d.get("train", {})})
        return cls(**d)

    def resolved(self, *, allow_emulated: bool = False) -> "EvalConfig":
        """A copy with ``auto`` device and precision replaced by what they are on this machine, and
        an explicit bf16/fp16 checked against the device (:func:`~nasconv.precision.resolve_precision`).
        Done where a configuration is made: what is stored and keyed never says ``auto``."""
        device = pick_device(self.device)
        precision = resolve_precision(self.train.precision, device, allow_emulated=allow_emulated)
        return replace(self, device=device, train=replace(self.train, precision=precision))

    def keyed_settings(self) -> dict[str, Any]:
        """What makes two evaluations of one architecture interchangeable (hashed by :meth:`settings_key`).

        Data, proxy and its settings (for a zero-cost proxy: the seed and input size, not the
        training schedule), device kind and latency settings; not the thread count or where the
        data was read from. ``auto`` device and precision count as what they are on this machine.
        """
        d = self.to_dict()
        for k in UNKEYED_SETTINGS:
            d.pop(k)
        if self.latency_threads is None:
            # unset: the key stays what it was before the setting existed (stored studies resume)
            d.pop("latency_threads")
        for key, before in (("metric", "accuracy"), ("holdout", None)):  # as latency_threads
            if d[key] == before:
                d.pop(key)
        device = pick_device(self.device)
        d["device"] = resolve_device_kind(device)
        if self.proxy != "train":
            # a zero-cost score depends on the initialisation (seed) and the input size, not on
            # the training schedule
            d["train"] = {"seed": self.train.seed, "resolution": self.train.resolution}
            # scored with every residual branch live (earlier versions scored the zero-init network)
            d["zero_cost_init"] = "branches-live"
        else:
            d.pop("zc_batch")
            if self.train.precision == "auto":
                d["train"]["precision"] = resolve_precision("auto", device)
            for k, legacy in LEGACY_TRAIN_SETTINGS.items():
                if d["train"][k] == legacy:
                    d["train"].pop(k)
        return d

    def settings_key(self) -> str:
        return hashlib.sha256(json.dumps(self.keyed_settings(), sort_keys=True).encode()).hexdigest()[:16]


def resolve_device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else device


def evaluate(arch: ArchSpec, config: EvalConfig | None = None, *,
             progress: Callable[[int, int, float], None] | None = None, keep_weights: bool = False) -> dict[str, Any]:
    """Accuracy (or proxy score), latency, params, MACs, timings and flags of one architecture.

    With ``keep_weights`` (training proxy) the trained network comes back too, as
    ``metrics["weights"]`` (:func:`nasconv.checkpoint.weights_payload`), for export.
    """
    cfg = config or EvalConfig()
    cfg.check()
    cfg = cfg.resolved()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device, lock_key = _device(cfg.device)
    t0 = time.perf_counter()
    cost = estimate_cost(arch)
    out: dict[str, Any] = {
        "arch_hash": arch.arch_hash, "space": arch.space, "proxy": cfg.proxy, "data": cfg.data,
        "params": cost.params, "macs": cost.macs, "settings_key": cfg.settings_key(),
        "nasconv_version": __version__, "torch_version": torch.__version__, "hostname": platform.node(),
        "accuracy": None, "score": None, "diverged": False, "diverged_step": None,
        "train_time_s": 0.0, "steps": 0, "precision": "fp32",  # a zero-cost proxy scores in fp32
    }
    ds = load_dataset(cfg.data, data_dir=cfg.data_dir, seed=cfg.train.seed, cache_dir=cfg.cache_dir,
                      holdout=cfg.holdout)
    # the network trained has the data's head; a stored study's 10-class architecture keeps its cost
    out.update(num_classes=arch.num_classes, data_classes=ds.num_classes)
    # The device to itself while a latency is timed: this evaluation's steps hold it shared, its
    # timing exclusively, against every other nasconv evaluation on this node (nasconv.device_lock).
    with DeviceGate(device, key=lock_key) as gate:
        if cfg.proxy == "train":
            _train(arch, cfg, ds, device, gate, out, progress, keep_weights)
        else:
            with gate.step():
                _zero_cost(arch, cfg, ds, device, out)
        if cfg.latency:
            _latency(arch, cfg, device, gate, out)
        else:
            out.update(latency_ms=None, device=device.type, threads=torch.get_num_threads())
    if cfg.device.startswith("cuda"):
        out["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        if lock_key is not None:
            out.update(device="cuda", simulated_cuda=True)
    out["eval_time_s"] = time.perf_counter() - t0
    return out


def _device(name: str) -> tuple[torch.device, str | None]:
    """The torch device to compute on, and the latency-lock key when it is not the device's own:
    under the GPU-scheduling tests' seam (:func:`nasconv.faults.simulated_cuda`) a ``cuda``
    evaluation computes on the CPU, locking the GPU Ray assigned it."""
    if simulated_cuda() and name.startswith("cuda"):
        return torch.device("cpu"), f"cuda-{os.environ.get('CUDA_VISIBLE_DEVICES') or 'none'}"
    return resolve_device(name), None


def _train(arch: ArchSpec, cfg: EvalConfig, ds: Any, device: torch.device, gate: DeviceGate, out: dict[str, Any],
           progress: Callable[[int, int, float], None] | None, keep_weights: bool) -> None:
    res = train_candidate(arch, ds, cfg.train, progress=progress, device=device,
                          keep_model=keep_weights, step_guard=gate.step)
    out.update(accuracy_uncertainty(res.accuracy, res.val_images))
    accuracy = res.accuracy
    if res.class_total:
        ba, se, ci = balanced_accuracy(res.class_correct, res.class_total)
        out.update(class_recall=[c / n if n else None for c, n in zip(res.class_correct, res.class_total)],
                   class_images=list(res.class_total))
        if cfg.metric == "balanced-accuracy":
            # the chosen metric is what "accuracy" (and its SE, interval, the score) means from here on
            out.update(plain_accuracy=res.accuracy, plain_accuracy_se=out["accuracy_se"], accuracy_se=se,
                       accuracy_ci=ci)
            accuracy = ba
        else:
            out.update(balanced_accuracy=ba, balanced_accuracy_se=se)
    out.update(metric=cfg.metric)
    out.update(accuracy=accuracy, score=accuracy, val_loss=res.val_loss, diverged=res.diverged,
               diverged_step=res.diverged_step, train_time_s=res.train_time_s, steps=res.steps,
               proxy_params=res.proxy_params, proxy_macs=res.proxy_macs, precision=res.precision)
    if res.model is not None and not res.diverged:
        from nasconv.checkpoint import weights_payload

        out["weights"] = weights_payload(res.model, num_classes=ds.num_classes)


def _zero_cost(arch: ArchSpec, cfg: EvalConfig, ds: Any, device: torch.device, out: dict[str, Any]) -> None:
    small = subset(ds, cfg.zc_batch, 1, cfg.train.seed)
    mean_std = (small.mean, small.std) if small.mean else None
    x = prepare_batch(small.train_x, channels=arch.in_channels, resolution=cfg.train.resolution,
                      mean_std=mean_std).to(device)
    torch.manual_seed(cfg.train.seed)
    # Not the zero-init residual start that brief training uses: with each block's last BN
    # scale at 0 every branch is cut off from the output, so synflow and grad_norm would see
    # only the stem, the shortcuts and the classifier, the same for every operator choice
    # (measured on resnet50: synflow's seed-to-seed spread was twice its spread between
    # architectures; with the branches live the architecture explains all of it).
    model = build_model(arch, num_classes=ds.num_classes, zero_init_residual=False).to(device)
    t1 = time.perf_counter()
    score = zero_cost_score(cfg.proxy, model, x, small.train_y.to(device))
    out.update(score=score, train_time_s=time.perf_counter() - t1)


def _latency(arch: ArchSpec, cfg: EvalConfig, device: torch.device, gate: DeviceGate, out: dict[str, Any]) -> None:
    res_px = cfg.latency_resolution or arch.resolution
    torch.manual_seed(cfg.train.seed)
    model = build_model(arch)  # built before the device is taken: only the timing holds it
    threads_before = torch.get_num_threads()
    if cfg.latency_threads:
        torch.set_num_threads(cfg.latency_threads)
    try:
        with gate.timing() as waited:
            lat = measure_latency(model, in_channels=arch.in_channels, resolution=res_px,
                                  batch_size=cfg.latency_batch, device=device, max_time_s=cfg.latency_max_time_s)
    finally:
        torch.set_num_threads(threads_before)
    out.update(latency_ms=lat.median_ms, latency_ci_ms=[lat.ci_low_ms, lat.ci_high_ms],
               latency_iqr_ms=lat.iqr_ms, latency_rel_iqr=lat.rel_iqr,
               latency_repeats=lat.repeats, latency_capped=lat.capped, latency_batch=lat.batch_size,
               latency_resolution=lat.resolution, device=lat.device, device_name=lat.device_name,
               threads=lat.threads, latency_isolated=gate.isolated, latency_wait_s=round(waited, 3))


def evaluate_keeping_weights(arch: ArchSpec, config: EvalConfig | None = None) -> dict[str, Any]:
    """:func:`evaluate` that also returns the trained weights (what ``search --keep-weights`` runs)."""
    return evaluate(arch, config, keep_weights=True)


def keep_weights_problem(space: Any, eval_config: EvalConfig) -> str | None:
    """Why a search of ``space`` evaluated with ``eval_config`` cannot keep exportable weights, or
    None when it can: only a proxy that trains the architecture itself gives them."""
    if eval_config.proxy != "train":
        return f"--keep-weights needs the training proxy (--proxy train), got {eval_config.proxy!r}"
    t = eval_config.train
    if ((t.max_depth is not None and any(t.max_depth < max(st.depths) for st in space.stages))
            or t.width_factor != 1.0 or (t.small_stem and space.stem == "imagenet")):
        return ("--keep-weights needs the proxy to train the architecture itself, not a reduced copy "
                f"(max_depth={t.max_depth}, width_factor={t.width_factor}, small_stem={t.small_stem}): "
                "add --full-proxy")
    return None


@dataclass(frozen=True)
class EvaluationJob:
    """What a worker runs: an evaluator of ``(ArchSpec, EvalConfig)`` over plain data (the
    architecture's and the settings' dicts) in, plain data out, so that a runner needs to know
    nothing of evaluation. Picklable when the evaluator is (Ray ships it to its workers)."""

    evaluator: Callable[..., dict[str, Any]] = evaluate

    @property
    def __wrapped__(self) -> Callable[..., dict[str, Any]]:  # where a runner finds the user's code
        return self.evaluator

    def __call__(self, arch_dict: dict[str, Any], config_dict: dict[str, Any]) -> dict[str, Any]:
        arch = ArchSpec.from_dict(arch_dict)
        fault_point("during_eval", arch.arch_hash)
        return dict(self.evaluator(arch, EvalConfig.from_dict(config_dict)))


#: training settings of ``full_proxy``: the whole candidate, not the reduced copy a space's proxy trains
FULL_PROXY_SETTINGS: dict[str, Any] = {"max_depth": None, "width_factor": 1.0, "small_stem": False}
#: training images of the CPU proxy (the reduced copy) where it trains in bf16, 1.5x the fp32 default:
#: what bf16 saves is spent on training. Measured on an AMD EPYC with AVX512-BF16 (2 threads,
#: benchmarks/bf16_budget.py, 3 seeds): the resnet50 baseline on 8,000 images in fp32 took 16.5 s
#: for 80.7%; on 12,000 in bf16 17.1 s (the intervals overlap) for 82.7%. bf16 ranks candidates as
#: fp32 does within the noise of a new seed (benchmarks/precision_fidelity.py)
CPU_BF16_TRAIN_IMAGES = TrainConfig.train_images * 3 // 2  # 12,000


def eval_config_for(space: Any, *, full_proxy: bool = False, data: str = "fashion-mnist", data_dir: str | None = None,
                    cache_dir: str | None = None,
                    proxy: str = "train", device: str = "auto", latency: bool = True, latency_batch: int = 1,
                    latency_threads: int | None = None, metric: str = "accuracy", holdout: float | None = None,
                    **train_overrides: Any) -> EvalConfig:
    """The checked evaluation settings for candidates of ``space`` (a :class:`~nasconv.spaces.SearchSpace`).

    Training starts from the space's proxy settings for the device (on a CUDA GPU its
    ``proxy_gpu``: the whole candidate, longer, in about a minute), or with ``full_proxy`` from
    :data:`FULL_PROXY_SETTINGS` (what exportable weights need); ``train_overrides`` (TrainConfig
    fields: ``epochs``, ``lr``, ``seed``, ``precision``...) then change single settings, ``None``
    values ignored. ``auto`` device and precision come back resolved (:meth:`EvalConfig.resolved`).
    On a CPU whose training resolves to bf16, the reduced copy trains on
    :data:`CPU_BF16_TRAIN_IMAGES` unless ``train_images`` is given or the space's proxy sets it.
    """
    cfg = EvalConfig(data=data, data_dir=data_dir, cache_dir=cache_dir, proxy=proxy, device=device, latency=latency,
                     latency_batch=latency_batch, latency_threads=latency_threads, metric=metric, holdout=holdout)
    base = dict(FULL_PROXY_SETTINGS if full_proxy else space.proxy_settings_for(pick_device(device)))
    cfg = replace(cfg, train=replace(cfg.train, **base))  # here None is a value (max_depth: no limit)
    cfg = with_train_overrides(cfg, **train_overrides)
    model_px = getattr(space, "resolution", None) if getattr(space, "kind", None) == "model" else None
    if model_px is not None and cfg.train.resolution != model_px:
        # a user's model is measured (cost, shapes) at the input it was made for: another size could
        # fail deep inside it, and its cost would not be the one stored
        raise UsageError(f"space {space.name!r} is a model made for {model_px} px inputs, so it trains at "
                         f"{model_px} px, not {cfg.train.resolution} (make the space again with --input "
                         f"Cx{cfg.train.resolution}x{cfg.train.resolution} to search at that size)")
    cfg.check()
    cfg = cfg.resolved()
    if (not full_proxy and train_overrides.get("train_images") is None and "train_images" not in base
            and cfg.device == "cpu" and cfg.train.precision == "bf16"):
        cfg = replace(cfg, train=replace(cfg.train, train_images=CPU_BF16_TRAIN_IMAGES))
    return cfg


def with_train_overrides(cfg: EvalConfig, **changes: Any) -> EvalConfig:
    """A copy with some training settings changed (``None`` values are ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return replace(cfg, train=replace(cfg.train, **changes)) if changes else cfg
