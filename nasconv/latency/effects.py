"""Stage x family latency effects from the lookup table alone, without training a network.

A stage's operator choice changes only that stage's blocks (the next stage's input is the stage's
width, not its operator), so the latency effect of family ``f`` in stage ``s`` against the stage's
reference family is a difference of part latencies the table already holds:

* **Shapes**: the mean over the stage's shape choices, uniformly (every width and depth the stage
  offers, and every input width the previous stage can hand it): what a uniform sampler's
  candidates average, and what an additive fit over candidates estimates. A choice of depth ``d``
  runs the stage's first block once and its stride-1 block ``d - 1`` times.
* **Hyperparameters**: a family's effect is the mean over its settings in the stage (e.g.
  ``gc(groups=2)``, ``gc(groups=4)``...), the reference's likewise; each setting's own effect
  against the reference mean is kept beside it (``settings``).
* **Scale**: the parts' difference times the calibration's slope (whole networks on this device
  measure ``intercept + slope x block sum``), so that an effect is in the milliseconds a whole
  network would differ by, as the effects fitted over timed candidates are.
* **Interval** (95%, normal): the difference is a linear combination ``sum_k a_k m_k`` of
  independently measured part medians, so its variance is ``sum_k (a_k se_k)^2`` (a part used in
  both families, or repeated, enters once with its net coefficient). A part's ``se_k`` is the larger
  of what its own interval says (half-width / 1.96) and what the table's passes say: every part is
  timed in :data:`~nasconv.latency.profiler.PART_ROUNDS` passes at different moments and the middle
  one kept, and the pooled spread of one pass's timing between passes
  (:func:`~nasconv.latency.model.retest_spread`) gives the middle of three a variance of
  :data:`MIDDLE_OF_3_VAR` times its square. The slope's own uncertainty (a bootstrap over the
  calibration networks) is added by the delta method. Not in the interval: how far one whole
  network strays from its calibrated sum (fusion, caches), a property of a network, not of a stage,
  and the device's drift since profiling (a common factor: it scales every effect alike).

An effect is *resolved* when its interval excludes zero. A family whose parts (or the reference's)
are missing from the table gets no number, and says which part is missing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import sqlalchemy as sa

from nasconv.arch import OpChoice
from nasconv.cost import block_out_size, stem_size
from nasconv.latency.blocks import block_part
from nasconv.latency.model import Calibration, fit_calibration, retest_spread
from nasconv.latency.profiler import PART_ROUNDS, round_key
from nasconv.latency.table import DeviceSetting, LatencyTable, _match, row_problem
from nasconv.spaces import SearchSpace
from nasconv.stats import Z95
from nasconv.storage.tables import LatencyBlockRow

#: variance of the middle of 3 independent normal draws, in units of one draw's variance
MIDDLE_OF_3_VAR = 0.4487
#: bootstrap resamples of the calibration networks for the slope's spread
SLOPE_RESAMPLES = 200


@dataclass(frozen=True)
class PartEffect:
    """A latency difference against the stage's reference, in ms, with its 95% interval."""

    estimate_ms: float
    low_ms: float
    high_ms: float
    #: the parts' medians' difference before the calibration's slope
    parts_ms: float

    @property
    def resolved(self) -> bool:
        return self.low_ms > 0 or self.high_ms < 0


@dataclass(frozen=True)
class TableEffect:
    stage: int
    family: str
    #: the family's mean over its settings (None when a part is missing)
    effect: PartEffect | None
    #: (setting label, its effect or None) per setting of the family in the stage
    settings: tuple[tuple[str, PartEffect | None], ...] = ()
    #: part keys the table lacks for this family or the reference
    missing: tuple[str, ...] = ()


@dataclass
class TableEffects:
    space: str
    setting: DeviceSetting
    references: list[str]
    slope: float
    #: the slope's relative standard deviation (bootstrap over the calibration networks)
    slope_rel_sd: float
    #: the pooled relative spread of one pass's timing between passes (0: no passes stored)
    pass_rel_sd: float
    effects: list[TableEffect] = field(default_factory=list)

    def get(self, stage: int, family: str) -> TableEffect | None:
        return next((e for e in self.effects if e.stage == stage and e.family == family), None)


def stage_weights(space: SearchSpace, stage: int, op: OpChoice) -> dict[str, float]:
    """Part key -> how many times the stage runs it with ``op``, averaged uniformly over the
    stage's input widths, widths and depths."""
    res = space.resolution
    h = stem_size(space.stem, res, res)[0]
    inputs = [space.stem_width]
    for st in space.stages[:stage]:
        h = block_out_size(h, st.stride)
        inputs = sorted({w * st.expansion for w in st.widths})
    st = space.stages[stage]
    h2 = block_out_size(h, st.stride)
    combos = [(c, w, d) for c in inputs for w in st.widths for d in st.depths]
    out: dict[str, float] = {}
    for c, w, d in combos:
        first = block_part(st.block, c, w, st.stride, st.expansion, op, h).key
        out[first] = out.get(first, 0.0) + 1.0 / len(combos)
        if d > 1:
            rest = block_part(st.block, w * st.expansion, w, 1, st.expansion, op, h2).key
            out[rest] = out.get(rest, 0.0) + (d - 1.0) / len(combos)
    return out


def _mean(weights: Sequence[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for w in weights:
        for k, v in w.items():
            out[k] = out.get(k, 0.0) + v / len(weights)
    return out


def _usable_rows(table: LatencyTable, setting: DeviceSetting) -> dict[str, tuple[float, float]]:
    """Every usable row of ``setting``: key -> (median ms, half-width of its 95% interval)."""
    if table.missing:
        return {}
    with table._session() as s:
        rows = s.scalars(sa.select(LatencyBlockRow).where(*_match(LatencyBlockRow, setting))).all()
        return {r.block_key: (r.median_ms, (r.ci_high_ms - r.ci_low_ms) / 2) for r in rows if row_problem(r) is None}


def pass_spread(rows: dict[str, tuple[float, float]], keys: Sequence[str]) -> float:
    """The pooled relative spread of one pass's timing of a part (0 when no passes are stored)."""
    rounds = [[rows[k][0] for i in range(PART_ROUNDS) if (k := round_key(key, i)) in rows] for key in keys]
    return retest_spread([r for r in rounds if len(r) >= 2])


def slope_spread(cal: Calibration, resamples: int = SLOPE_RESAMPLES, seed: int = 0) -> float:
    """The calibration slope's relative standard deviation: a bootstrap over its networks (each
    resample with at least 3 distinct ones, else the fit is a ratio). Fewer than 3 networks: the
    model's own fallback (its interval of at least +-25%, as a standard deviation)."""
    pts = list(cal.points)
    if len({p[0] for p in pts}) < 3:
        return cal.rel_half_width() / Z95
    rng = random.Random(seed)
    slopes = []
    while len(slopes) < resamples:
        draw = [pts[rng.randrange(len(pts))] for _ in pts]
        if len({p[0] for p in draw}) >= 3:
            slopes.append(fit_calibration(draw).slope)
    return float(np.std(slopes) / cal.slope)


def _difference(coef: dict[str, float], rows: dict[str, tuple[float, float]], pass_rel_sd: float,
                slope: float, slope_rel_sd: float) -> PartEffect:
    diff, var = 0.0, 0.0
    for key, a in coef.items():
        if abs(a) < 1e-12:
            continue
        median, half = rows[key]
        se = max(half / Z95, math.sqrt(MIDDLE_OF_3_VAR) * pass_rel_sd * median)
        diff += a * median
        var += (a * se) ** 2
    est = slope * diff
    sd = math.sqrt(slope ** 2 * var + (est * slope_rel_sd) ** 2)
    return PartEffect(est, est - Z95 * sd, est + Z95 * sd, diff)


def family_ops(space: SearchSpace, stage: int, family: str) -> list[OpChoice]:
    return [o for o in space.stages[stage].ops if o.name == family]


def table_effects(space: SearchSpace, table: LatencyTable, setting: DeviceSetting, cal: Calibration,
                  references: Sequence[str]) -> TableEffects:
    """Every stage x family latency effect of ``space`` against ``references`` (one family per
    stage) from the table's parts under ``setting`` (see the module's doc)."""
    rows = _usable_rows(table, setting)
    weights = {(s, o.label()): stage_weights(space, s, o) for s, st in enumerate(space.stages) for o in st.ops}
    keys = sorted({k for w in weights.values() for k in w})
    out = TableEffects(space.name, setting, list(references), cal.slope, slope_spread(cal), pass_spread(rows, keys))
    for s, st in enumerate(space.stages):
        ref_w = _mean([weights[s, o.label()] for o in family_ops(space, s, references[s])])
        families = sorted({o.name for o in st.ops}, key=[o.name for o in st.ops].index)
        for fam in families:
            if fam == references[s]:
                continue
            own = [weights[s, o.label()] for o in family_ops(space, s, fam)]
            missing = tuple(sorted({k for w in [ref_w, *own] for k in w if k not in rows}))

            def effect(w: dict[str, float]) -> PartEffect | None:
                coef = {k: w.get(k, 0.0) - ref_w.get(k, 0.0) for k in set(w) | set(ref_w)}
                if any(k not in rows for k, a in coef.items() if abs(a) >= 1e-12):
                    return None
                return _difference(coef, rows, out.pass_rel_sd, out.slope, out.slope_rel_sd)

            settings = tuple((o.label(), effect(w)) for o, w in zip(family_ops(space, s, fam), own))
            out.effects.append(TableEffect(s, fam, None if missing else effect(_mean(own)), settings, missing))
    return out


def effects_dict(effects: TableEffects) -> dict[str, Any]:
    """Plain data: the method's figures and, per effect, its estimate, interval and settings."""
    def one(e: PartEffect | None) -> dict[str, Any]:
        if e is None:
            return {"estimate": None, "ci": None, "resolved": False, "parts_ms": None}
        return {"estimate": e.estimate_ms, "ci": [e.low_ms, e.high_ms], "resolved": e.resolved,
                "parts_ms": e.parts_ms}

    return {"space": effects.space, "setting": effects.setting.where(), "references": effects.references,
            "slope": effects.slope, "slope_rel_sd": effects.slope_rel_sd, "pass_rel_sd": effects.pass_rel_sd,
            "effects": [{"stage": e.stage, "family": e.family, **one(e.effect),
                         "settings": [{"op": label, **one(x)} for label, x in e.settings],
                         "missing": list(e.missing)} for e in effects.effects]}


__all__ = ["MIDDLE_OF_3_VAR", "PartEffect", "TableEffect", "TableEffects", "effects_dict", "pass_spread",
           "slope_spread", "stage_weights", "table_effects"]
