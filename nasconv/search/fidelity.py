"""Multi-fidelity settings: how many rungs, how much more training each, how many repeats.

Rung ``r`` trains on ``round(train_images * eta**r)`` images (``train_images`` is the base, rung
0's); the top rung validates on the whole held-out split, a lower rung on as many held-out images
as it trains on (at least 500, at most ``val_images``): its measurement noise stays in proportion
to its training noise, and validation no longer dominates a cheap rung's cost (resnet20 on
CIFAR-10, 1 thread: a 444-image rung 0 took 1.83 s validating on 2,000 images, 1.12 s on 500;
the 4,000-image top rung 7.6 s). Latency does not depend on training,
so it is measured once, at rung 0, and again for each repeat. A flat search (one rung, no
repeats) evaluates exactly as before rungs existed: same settings, same cache keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from nasconv.errors import UsageError
from nasconv.evaluate import EvalConfig

#: more rungs than this would train on eta**9 times the base: beyond any dataset
MAX_RUNGS = 10
MAX_REPEATS = 20
#: the fewest held-out images a lower rung validates on (a standard error of ~2 points at 75%)
MIN_LOWER_VAL = 500


@dataclass(frozen=True)
class Fidelity:
    rungs: int = 1
    eta: float = 3.0
    #: front members at the top rung are evaluated again with this many further seeds
    repeats: int = 0
    #: how a lower rung's validation size is chosen: "scaled" (as many as it trains on, see above)
    #: or "fixed" (``val_images``, the rule of studies made before "scaled"; they keep it)
    lower_val: str = "scaled"

    def check(self) -> None:
        if not 1 <= self.rungs <= MAX_RUNGS:
            raise UsageError(f"--rungs must be in [1, {MAX_RUNGS}], got {self.rungs}")
        if not (math.isfinite(self.eta) and self.eta > 1):
            raise UsageError(f"--eta must be a number > 1 (each rung keeps the top 1/eta), got {self.eta}")
        if not 0 <= self.repeats <= MAX_REPEATS:
            raise UsageError(f"--repeats must be in [0, {MAX_REPEATS}], got {self.repeats}")

    @property
    def top(self) -> int:
        return self.rungs - 1

    @property
    def tracked(self) -> bool:
        """Whether evaluations beyond each trial's first exist (promotions or repeats)."""
        return self.rungs > 1 or self.repeats > 0

    def identity(self) -> dict[str, Any]:
        """What a study is stamped with and resumed only under (repeats may change)."""
        ident: dict[str, Any] = {"rungs": self.rungs, "eta": float(self.eta) if self.rungs > 1 else None}
        if self.rungs > 1:
            ident["lower_val"] = self.lower_val
        return ident

    def adopt(self, stored: dict[str, Any] | None) -> Fidelity:
        """These settings, with the lower-rung validation rule a stored study was made with."""
        if self.rungs > 1 and stored and stored.get("rungs") == self.rungs:
            return replace(self, lower_val=stored.get("lower_val", "fixed"))
        return self

    def train_images(self, base: int, rung: int) -> int:
        return int(round(base * self.eta ** rung))

    def rung_config(self, cfg: EvalConfig, rung: int, repeat: int = 0) -> EvalConfig:
        """The evaluation settings of ``rung`` (``repeat`` k: seed + k, latency measured again)."""
        if not self.tracked:
            return cfg
        n_train = self.train_images(cfg.train.train_images, rung)
        n_val = self.val_images(cfg.train.val_images, n_train, rung)
        train = replace(cfg.train, train_images=n_train, val_images=n_val, seed=cfg.train.seed + repeat)
        return replace(cfg, train=train, latency=cfg.latency and (rung == 0 or repeat > 0))

    def val_images(self, val_images: int | None, train_images: int, rung: int) -> int | None:
        """How many held-out images ``rung`` validates on (None: all)."""
        if self.rungs == 1:
            return val_images
        if rung == self.top:
            return None
        if self.lower_val == "fixed" or val_images is None:
            return val_images
        return min(val_images, max(MIN_LOWER_VAL, train_images))

    def baseline_config(self, cfg: EvalConfig) -> EvalConfig:
        """The baseline is evaluated at the top rung (it is compared with the front there), with latency."""
        return replace(self.rung_config(cfg, self.top), latency=cfg.latency)

    def check_dataset(self, base: int, available: int, data: str) -> None:
        top = self.train_images(base, self.top)
        if top > available:
            raise UsageError(f"the top rung ({self.rungs} rungs, eta {self.eta:g}) trains on {top:,} images, but "
                             f"{data} has {available:,} training images; use fewer rungs, a smaller --eta or "
                             "fewer --train-images")
