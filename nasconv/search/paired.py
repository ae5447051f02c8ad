"""A search's last step: its front's members and the baseline timed together, interleaved
(:mod:`nasconv.latency.paired`), so that the latency differences it reports stand on timings
comparable in time, not on timings taken up to hours apart on a machine whose speed drifts.

The timing is kept as the study's :data:`PAIRED_ATTR` attribute (per architecture hash, its time
in each round; when; the device and setting), which ``pareto`` and ``report`` read
(:func:`nasconv.results.noise.resolution`). It is taken only where it repeats the measurements it
qualifies: the front's latencies timed on this machine's device (the evaluation's
``device_name``, or re-measured here by ``predict+remeasure``), with the evaluation's threads,
batch and resolution. A front timed on a cluster's other devices, by a stand-in evaluator, or
only predicted, is not timed again, and no latency difference is claimed for it.
"""

from __future__ import annotations

from typing import Any, Sequence

import optuna

from nasconv.arch import ArchSpec
from nasconv.device_lock import DeviceGate
from nasconv.errors import NasconvError
from nasconv.latency import time_together
from nasconv.profile import device_name, resolve_device
from nasconv.search.config import SearchConfig
from nasconv.search.latency_gate import search_threads
from nasconv.spaces import SearchSpace

#: the study attribute that holds the last paired timing
PAIRED_ATTR = "latency_paired"
#: the paired timing's time cap: this many times one evaluation's latency cap per network
PAIRED_TIME_FACTOR = 1.0


def timed_here(trials: Sequence[optuna.trial.FrozenTrial], rows: Sequence[dict[str, Any]], here: str) -> bool:
    """Whether every front member's latency was timed on this machine's device ``here``."""
    by_number = {t.number: t for t in trials}
    for row in rows:
        t = by_number.get(row.get("trial"))
        if row.get("latency_source") == "remeasured":
            continue
        if t is None or row.get("latency_ms") is None or t.user_attrs.get("device_name") != here \
                or row.get("latency_source") == "predicted":
            return False
    return bool(rows)


def time_front(study: optuna.Study, cfg: SearchConfig, space: SearchSpace, trials: Sequence[optuna.trial.FrozenTrial],
               front: Sequence[dict[str, Any]], baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """Time ``front``'s members (summary rows of ``trials``) and the baseline together and store
    the timing on the study; the stored record, or None where the front does not qualify (see the
    module's doc) or the device cannot be had here."""
    if "latency" not in cfg.objectives or not front:
        return None
    try:
        dev = resolve_device(cfg.eval.device)
    except NasconvError:  # a cluster's GPUs, absent from the driver's machine
        return None
    if not timed_here(trials, front, device_name(dev)) or any(not r.get("arch") for r in front):
        return None
    archs = {str(r["arch_hash"]): ArchSpec.from_dict(r["arch"]) for r in front}
    reference = None
    if baseline and baseline.get("latency_ms") is not None:
        base = space.baseline()
        if base.arch_hash == baseline.get("arch_hash"):
            reference = base.arch_hash
            archs[reference] = base
    threads = search_threads(cfg.eval, cfg.cpus_per_worker, cfg.workers)
    try:
        with DeviceGate(dev) as gate, gate.timing():
            timing = time_together(archs, device=cfg.eval.device, threads=threads, batch=cfg.eval.latency_batch,
                                   resolution=cfg.eval.latency_resolution,
                                   max_time_s=PAIRED_TIME_FACTOR * cfg.eval.latency_max_time_s * len(archs))
    except (NasconvError, RuntimeError):  # the device taken away, out of memory: the line says so
        return None
    record = {**timing.to_dict(), "reference": reference,
              "trials": {str(r["arch_hash"]): r.get("trial") for r in front}}
    study.set_user_attr(PAIRED_ATTR, record)
    return record
