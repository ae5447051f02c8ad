"""Evaluate a subnetwork by inheriting a trained supernet's weights.

:meth:`TrainedSupernet.load` reads a checkpoint once (a Ray worker keeps the object and scores
many architectures with it); :meth:`TrainedSupernet.evaluate_subnet` assembles the architecture's
subnet, recalibrates its batch norms on a few training batches (the running statistics the
supernet kept mix every choice that shared a position; each subnet gets its own, as in
Guo et al.'s SPOS), validates on the held-out split the brief training validates on, and returns
the metrics dict of :func:`nasconv.evaluate.evaluate` with ``fidelity: "oneshot"``. The BN
statistics are put back afterwards: evaluations do not change the supernet.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasconv._version import __version__
from nasconv.arch import ArchSpec
from nasconv.cost import estimate_cost
from nasconv.data import Dataset
from nasconv.data.task import balanced_accuracy
from nasconv.ops import set_temperature
from nasconv.precision import autocast
from nasconv.spaces import SearchSpace
from nasconv.stats import accuracy_uncertainty
from nasconv.supernet.model import ProxySettings, Supernet, load_weights, proxy_arch
from nasconv.supernet.store import read_checkpoint
from nasconv.supernet.train import SupernetConfig, locate
from nasconv.train import evaluate_by_class, prepare_split

#: training batches each subnet's batch norms are recalibrated on (the same ones for every subnet)
RECALIBRATION_BATCHES = 4
FIDELITY = "oneshot"


@dataclass
class TrainedSupernet:
    """A supernet loaded for evaluation, with the data it validates on (load once, score many)."""

    space: SearchSpace
    cfg: SupernetConfig
    net: Supernet
    identity: dict[str, Any]
    step: int
    path: Path
    x_recal: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    device: torch.device
    recalibration_batches: int = RECALIBRATION_BATCHES

    @classmethod
    def load(cls, space: SearchSpace, cfg: SupernetConfig, folder: str | Path, *, ds: Dataset | None = None,
             recalibration_batches: int = RECALIBRATION_BATCHES) -> "TrainedSupernet":
        """The checkpoint of ``space`` trained with ``cfg`` in ``folder``; refused (one line) when it
        is missing, unreadable or of other settings."""
        dev, ds, ident, path = locate(space, cfg, folder, ds)
        t = cfg.eval.train
        state = read_checkpoint(path, ident)
        net = Supernet(space, ProxySettings.of(t, ds.num_classes), seed=t.seed)
        load_weights(net, state["model"])
        net = net.to(dev).eval()
        x_train, _, x_val, y_val = prepare_split(ds, cfg.train, space.in_channels)
        gen = torch.Generator().manual_seed(t.seed + 1)
        pick = torch.randperm(len(x_train), generator=gen)[:recalibration_batches * t.batch_size]
        return cls(space, cfg, net, ident, int(state["step"]), path, x_train[pick].clone(), x_val, y_val, dev,
                   recalibration_batches)

    @property
    def settings_key(self) -> str:
        """What makes two one-shot evaluations interchangeable: the supernet's identity and how
        subnets are recalibrated and validated (the fidelity is part of it)."""
        keyed = {"fidelity": FIDELITY, "supernet": self.identity, "step": self.step,
                 "recalibration_batches": self.recalibration_batches, "val_images": len(self.y_val)}
        return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def evaluate_subnet(self, arch: ArchSpec) -> dict[str, Any]:
        """The metrics of ``arch`` with the supernet's weights (:func:`nasconv.evaluate.evaluate`'s keys)."""
        t0 = time.perf_counter()
        t = self.cfg.eval.train
        sub = self.net.subnet(arch)
        if any(s.op.name == "dynconv" for s in arch.stages):
            set_temperature(sub, t.temperature_end)
        bns = [m for m in sub.modules() if isinstance(m, nn.BatchNorm2d)]
        kept = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
                for m in bns]
        try:
            recalibrate_bn(sub, self.x_recal, t.batch_size, self.device, t.precision)
            correct, val_loss = evaluate_by_class(sub, self.x_val, self.y_val, self.net.proxy.num_classes,
                                                  device=self.device, precision=t.precision)
        finally:
            with torch.no_grad():
                for m, (mean, var, n, momentum) in zip(bns, kept):
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(n)
                    m.momentum = momentum
        total = [int(v) for v in torch.bincount(self.y_val, minlength=self.net.proxy.num_classes).tolist()]
        plain = sum(correct) / len(self.y_val)
        cost = estimate_cost(arch)
        proxy = proxy_arch(arch, self.net.proxy)
        proxy_cost = estimate_cost(proxy, t.resolution, num_classes=self.net.proxy.num_classes,
                                   in_channels=arch.in_channels)
        elapsed = time.perf_counter() - t0
        out: dict[str, Any] = {
            "arch_hash": arch.arch_hash, "space": arch.space, "proxy": "train", "fidelity": FIDELITY,
            "data": self.cfg.eval.data, "params": cost.params, "macs": cost.macs, "settings_key": self.settings_key,
            "nasconv_version": __version__, "torch_version": torch.__version__, "hostname": platform.node(),
            "accuracy": plain, "score": plain, "val_loss": val_loss, "diverged": False, "diverged_step": None,
            "train_time_s": 0.0, "steps": 0, "precision": t.precision, "proxy_params": proxy_cost.params,
            "proxy_macs": proxy_cost.macs, "supernet_key": self.path.parent.name, "supernet_steps": self.step,
            "recalibration_images": len(self.x_recal), "latency_ms": None, "device": self.device.type,
            "threads": torch.get_num_threads(), "eval_time_s": elapsed,
        }
        out.update(accuracy_uncertainty(plain, len(self.y_val)))
        ba, se, ci = balanced_accuracy(correct, total)
        out.update(class_recall=[c / n if n else None for c, n in zip(correct, total)], class_images=total)
        metric = getattr(self.cfg.eval, "metric", "accuracy")
        if metric == "balanced-accuracy":  # what "accuracy" means from here on, as in nasconv.evaluate
            out.update(plain_accuracy=plain, plain_accuracy_se=out["accuracy_se"], accuracy=ba, score=ba,
                       accuracy_se=se, accuracy_ci=ci)
        else:
            out.update(balanced_accuracy=ba, balanced_accuracy_se=se)
        out["metric"] = metric
        return out


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device, precision: str) -> None:
    """Fresh running statistics for every BN of ``model``: the plain average over ``x``'s batches."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the recalibration batches
    model.train()
    for i in range(0, len(x) - batch_size + 1, batch_size):
        with autocast(precision, device):
            model(x[i:i + batch_size].to(device))
    model.eval()
