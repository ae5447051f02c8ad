"""How much slower (or faster) the device times now than when its latency table was made.

A table is profiled once and used for days; a machine's speed is not that constant. On this
project's shared 2-core VMs the same resnet20 table, profiled twice 14 minutes apart, predicted
16.5% apart (median), and a latency-budget search run after the first profile measured 11 of 12
trained candidates over a budget the prediction had them under (``benchmarks/results/
latency_model.md`` as of 989cc7c, kept in ``latency_model-earlier-runs.json``). A search
therefore times a few of the table's own calibration networks again before it uses the table:
their median ratio now/then is the drift, and the model's calibration is scaled by it
(:meth:`LatencyModel.scaled`). It costs a few network timings (well
under a second each for the shipped spaces' CPU networks) per search.
"""

from __future__ import annotations

import statistics
from typing import Any

from nasconv.errors import NasconvError
from nasconv.latency.model import LatencyModel
from nasconv.latency.profiler import Repeats, calibration_archs, measure_network, network_key
from nasconv.latency.table import LatencyTable

#: calibration networks timed again per search, and how carefully (the profile's own are 3 s each)
DRIFT_NETWORKS = 3
DRIFT_REPEATS = Repeats(warmup=3, min_repeats=10, max_repeats=100, target_rel_iqr=0.03, max_time_s=1.0)
#: a drift smaller than this is left alone: two careful timings of one network differ by ~1-3%
DRIFT_TOLERANCE = 0.03


def time_network(arch: Any, setting: Any, device: str) -> float:
    """One careful timing (median ms) of a calibration network now; the one place the drift check
    reads the clock (tests replace it with known timings)."""
    return measure_network(arch, setting, device, DRIFT_REPEATS).median_ms


def drift_factor(model: LatencyModel, table: LatencyTable, device: str, n: int = DRIFT_NETWORKS) -> float | None:
    """The median of (time now / time stored) over the first ``n`` calibration networks the table
    holds; None when it holds none (a table without whole networks, or made by an older nasconv)."""
    ratios: list[float] = []
    for a in calibration_archs(model.space, model.calibration.n):  # the networks it was calibrated on
        try:
            then = table.blocks(model.setting, [network_key(a)], space=model.space.name)[network_key(a)].median_ms
        except NasconvError:  # not stored (or a corrupt row): another one will do
            continue
        if then > 0:
            ratios.append(time_network(a, model.setting, device) / then)
        if len(ratios) == n:
            break
    return statistics.median(ratios) if ratios else None


def corrected(model: LatencyModel, table: LatencyTable, device: str,
              tolerance: float = DRIFT_TOLERANCE) -> tuple[LatencyModel, float | None]:
    """``model`` scaled by the device's drift when it exceeds ``tolerance``, and the drift."""
    f = drift_factor(model, table, device)
    if f is None or abs(f - 1) <= tolerance:
        return model, f
    return model.scaled(f), f
