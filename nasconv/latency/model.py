"""Predicting a network's latency from the lookup table: the sum of its parts' medians, mapped to
whole-network latency by the space's calibration (a linear fit on measured networks, where fusion,
caches and call overhead make the whole differ from the sum), with a 95% interval from the
calibration's residuals and the parts' own intervals."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np

from nasconv.arch import ArchSpec
from nasconv.latency.blocks import arch_key_counts, space_parts
from nasconv.latency.table import BlockLatency, DeviceSetting, LatencyTable, LatencyTableError, require_calibration
from nasconv.spaces import SearchSpace
from nasconv.stats import t975


@dataclass(frozen=True)
class LatencyPrediction:
    latency_ms: float
    #: 95% interval of what a careful measurement would give
    low_ms: float
    high_ms: float
    #: the parts' medians summed, before calibration
    block_sum_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interval_ms": [self.low_ms, self.high_ms]}


@dataclass(frozen=True)
class Calibration:
    """``measured ~ intercept_ms + slope * block_sum`` over ``n`` networks, with the relative
    residuals' spread (a robust standard deviation: :func:`fit_calibration`) and a measurement's own
    relative spread on this device (:func:`retest_spread`)."""

    intercept_ms: float
    slope: float
    n: int
    rel_residual_sd: float
    #: (block sum, measured) per calibration network
    points: tuple[tuple[float, float], ...] = ()
    #: how far one careful timing of a network strays from another of the same network, relative
    #: (robust standard deviation over the calibration networks' rounds; 0 when unknown)
    retest_rel_sd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["points"] = [list(p) for p in self.points]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        try:
            cal = cls(float(d["intercept_ms"]), float(d["slope"]), int(d["n"]), float(d["rel_residual_sd"]),
                      tuple((float(a), float(b)) for a, b in d.get("points", ())),
                      float(d.get("retest_rel_sd", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise LatencyTableError(f"corrupt calibration: {type(exc).__name__}: {exc}") from None
        if not (math.isfinite(cal.intercept_ms) and math.isfinite(cal.slope) and cal.slope > 0
                and math.isfinite(cal.rel_residual_sd) and cal.rel_residual_sd >= 0 and cal.n >= 1
                and math.isfinite(cal.retest_rel_sd) and cal.retest_rel_sd >= 0):
            raise LatencyTableError(f"corrupt calibration: slope {cal.slope!r}, intercept {cal.intercept_ms!r}, "
                                    f"residual sd {cal.rel_residual_sd!r}, n {cal.n!r}")
        return cal

    def rel_half_width(self) -> float:
        """Half the relative width of a 95% prediction interval for one new network's measurement:
        the calibration's residuals (its fit to middle-of-3 timings) and one timing's own spread."""
        if self.n < 3:
            return max(0.25, 2 * self.rel_residual_sd, 2 * self.retest_rel_sd)  # too few networks to trust
        return t975(self.n - 2) * math.sqrt(self.rel_residual_sd ** 2 * (1 + 1 / self.n) + self.retest_rel_sd ** 2)


def fit_calibration(points: Sequence[tuple[float, float]]) -> Calibration:
    """``measured ~ a + b x block sum``, robustly: least absolute relative error (iteratively
    reweighted least squares), with the spread of the relative residuals as 1.4826 x their median
    absolute deviation. On a shared machine a network timed while another process ran is 1.5-2.5x
    slower (seen here); a least-squares fit follows such a point and its standard deviation makes
    every interval wide, where the median-based fit and spread follow the networks timed alone.
    Fewer than 3 networks, or a fit that is not increasing: a pure ratio (the median one)."""
    pts = [(float(x), float(y)) for x, y in points if x > 0 and y > 0]
    if not pts:
        raise LatencyTableError("no calibration network was measured")
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    a, b = 0.0, float(np.median(y / x))
    if len(pts) >= 3 and np.ptp(x) > 0:
        A = np.stack([np.ones_like(x), x], axis=1) / y[:, None]
        w = np.ones_like(y)
        for _ in range(50):  # IRLS for the L1 norm of the relative residuals
            (a_fit, b_fit), *_ = np.linalg.lstsq(A * w[:, None], w, rcond=None)
            rel = np.abs(1 - (a_fit + b_fit * x) / y)
            w = 1 / np.sqrt(np.maximum(rel, 1e-4))
        if b_fit > 0 and np.all(a_fit + b_fit * x > 0):
            a, b = float(a_fit), float(b_fit)
    rel = y / (a + b * x) - 1
    sd = float(1.4826 * np.median(np.abs(rel - np.median(rel)))) if len(pts) > 2 else float(np.abs(rel).max())
    return Calibration(a, b, len(pts), sd, tuple(pts))


def retest_spread(rounds: Sequence[Sequence[float]]) -> float:
    """A robust relative standard deviation of one timing, from several timings of each of several
    networks taken at different moments: per network with at least 2, the range of the logs over
    its expected value for that many normal draws (d2: 1.128 for 2, 1.693 for 3, 2.059 for 4), and
    the median of those over the networks (a network timed during a burst does not set it). On this
    project's shared VMs the prediction's interval without it covered 56-76% of careful timings,
    against the 95% it claims (benchmarks/results/latency_model-resnet20-rounds.md)."""
    d2 = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326}
    est = [float(np.ptp(np.log(r))) / d2[min(len(r), 5)] for r in rounds if len(r) >= 2 and min(r) > 0]
    return float(np.median(est)) if est else 0.0


class LatencyModel:
    """Predicts the latency of a space's architectures on one device setting (:meth:`predict`)."""

    def __init__(self, space: SearchSpace, setting: DeviceSetting, blocks: dict[str, BlockLatency],
                 calibration: Calibration) -> None:
        self.space, self.setting, self.calibration = space, setting, calibration
        self._median = {k: b.median_ms for k, b in blocks.items()}
        self._half = {k: b.half_ms for k, b in blocks.items()}
        self._rel = calibration.rel_half_width()

    def block_sum(self, arch: ArchSpec) -> tuple[float, float]:
        """The parts' medians summed and the half-width of that sum (independent parts, a repeated
        part counted as one measurement)."""
        total, var = 0.0, 0.0
        for key, n in arch_key_counts(arch).items():
            try:
                total += n * self._median[key]
            except KeyError:
                raise LatencyTableError(f"part {key} of architecture {arch.arch_hash} is not in the latency table "
                                        f"of space {self.space.name!r}; is the architecture from this space?") from None
            var += (n * self._half[key]) ** 2
        return total, math.sqrt(var)

    def scaled(self, factor: float) -> "LatencyModel":
        """This model with every prediction ``factor`` times larger (the device's drift since the
        table was made: :mod:`nasconv.latency.drift`)."""
        cal = self.calibration
        out = copy.copy(self)
        out.calibration = replace(cal, intercept_ms=cal.intercept_ms * factor, slope=cal.slope * factor)
        return out

    def predict(self, arch: ArchSpec) -> LatencyPrediction:
        s, s_half = self.block_sum(arch)
        cal = self.calibration
        pred = cal.intercept_ms + cal.slope * s
        rel = math.hypot(self._rel, cal.slope * s_half / pred)
        return LatencyPrediction(pred, pred * max(0.0, 1 - rel), pred * (1 + rel), s)


def load_model(table: LatencyTable, space: SearchSpace, setting: DeviceSetting) -> LatencyModel:
    """The space's model under ``setting``; :class:`LatencyTableError` (one line: what is missing,
    what differs, how to make it) when the table cannot give one."""
    _, cal = require_calibration(table, setting, space.name)
    calibration = Calibration.from_dict(cal)
    blocks = table.blocks(setting, [p.key for p in space_parts(space)], space=space.name)
    return LatencyModel(space, setting, blocks, calibration)
