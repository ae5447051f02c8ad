"""What the noise allows: each front member's intervals, and which differences they resolve.

An accuracy measured on n validation images has a binomial standard error (Wilson interval); a
median latency a distribution-free interval over its timed repeats (nasconv.stats). MACs and
parameters are exact. Two members (or a member and the baseline) differ on accuracy when their
difference exceeds 1.96 standard errors of the difference; the front is "ordered by" an
objective when every pair of neighbours along it differs so.

Latency is another matter: two timings taken minutes apart differ by the machine's drift too,
which the interval of each (over its own repeats) does not cover (a baseline timed 6.72 ms and,
forty minutes later, 8.25 ms, while a front member timed 6.20 ms in between). A latency
difference is therefore only judged on timings comparable in time: the front's members and the
baseline timed together, interleaved, when the search ended (:mod:`nasconv.latency.paired`,
stored as the study's ``latency_paired`` attribute). Two networks differ when the 95%
distribution-free interval of the median of their per-round ratio excludes 1. Where no such
timing covers the front (a study from before it, an interrupted search, a front timed elsewhere)
no latency difference is claimed, and the line says why.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

from nasconv.stats import accuracy_uncertainty, differ, median_interval, se_from_interval

#: a stored paired timing is read only within these bounds (ms), as every stored timing is
MAX_PAIRED_MS = 1e7

#: objective -> (the summary row's value key, its interval key)
NOISY = {"accuracy": ("accuracy", "accuracy_ci"), "latency": ("latency_ms", "latency_ci_ms")}


def fill_intervals(row: dict[str, Any], val_images: int | None) -> dict[str, Any]:
    """``row`` with the accuracy's SE and interval, derived from ``val_images`` where the
    evaluation predates their storing (nasconv < 0.9 kept the accuracy only)."""
    acc, n = row.get("accuracy"), row.get("val_images") or val_images
    if acc is not None and n and row.get("accuracy_ci") is None:
        row.update(accuracy_uncertainty(acc, int(n)))
    return row


def _se(row: dict[str, Any], objective: str) -> float | None:
    value_key, ci_key = NOISY[objective]
    if row.get(value_key) is None:
        return None
    if objective == "accuracy" and row.get("accuracy_se") is not None:
        return float(row["accuracy_se"])
    ci = row.get(ci_key)
    return se_from_interval(*ci) if ci else None


def paired_timings(record: dict[str, Any] | None) -> dict[str, list[float]]:
    """A stored paired timing's per-network rounds (arch hash -> ms per round), the networks whose
    rounds are all finite, positive and bounded, and of one length; {} when there is none."""
    if not isinstance(record, dict) or not isinstance(record.get("timings_ms"), dict):
        return {}
    out: dict[str, list[float]] = {}
    for key, values in record["timings_ms"].items():
        try:
            ms = [float(v) for v in values]
        except (TypeError, ValueError):
            continue
        if ms and all(math.isfinite(v) and 0 < v <= MAX_PAIRED_MS for v in ms):
            out[str(key)] = ms
    lengths = {len(v) for v in out.values()}
    return out if len(lengths) == 1 else {}


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """The median over rounds of ``a``'s time over ``b``'s (timed in the same rounds) and its 95%
    distribution-free interval."""
    r = [x / y for x, y in zip(a, b)]
    lo, hi = median_interval(r)
    return float(statistics.median(r)), lo, hi


def _paired_differ(a: Sequence[float], b: Sequence[float]) -> bool:
    _, lo, hi = paired_ratio(a, b)
    return lo > 1.0 or hi < 1.0


def _latency(front: Sequence[dict[str, Any]], baseline: dict[str, Any] | None,
             paired: dict[str, Any] | None) -> dict[str, Any]:
    rows = [r for r in front if r.get("latency_ms") is not None]
    if len(rows) < len(front) or not rows:
        return {"measured": False}
    info: dict[str, Any] = {"measured": True, "members": len(rows), "neighbour_pairs": len(rows) - 1}
    timings = paired_timings(paired)
    if not timings or any(r.get("arch_hash") not in timings for r in rows):
        info["paired"] = False
        info["why"] = ("no paired timing of this front is stored (the study predates it, its search was "
                       "interrupted, or its latencies were not timed on the searching machine's device)"
                       if not timings else "the front has changed since its members were timed together")
        return info
    t = {r["arch_hash"]: timings[r["arch_hash"]] for r in rows}
    rows = sorted(rows, key=lambda r: statistics.median(t[r["arch_hash"]]))
    info.update(paired=True, rounds=len(next(iter(timings.values()))), timed=(paired or {}).get("started"),
                neighbour_pairs_resolved=sum(_paired_differ(t[a["arch_hash"]], t[b["arch_hash"]])
                                             for a, b in zip(rows, rows[1:])))
    if baseline and baseline.get("latency_ms") is not None:
        base = timings.get(str(baseline.get("arch_hash")))
        if base is None:
            info["baseline_paired"] = False
        else:
            ratios = [(r, *paired_ratio(t[r["arch_hash"]], base)) for r in rows]
            info["differ_from_baseline"] = sum(lo > 1.0 or hi < 1.0 for _, _, lo, hi in ratios)
            info["ratio_to_baseline"] = [{"trial": r.get("trial"), "ratio": m, "ci": [lo, hi]}
                                         for r, m, lo, hi in ratios]
    return info


def resolution(front: Sequence[dict[str, Any]], baseline: dict[str, Any] | None,
               objectives: Sequence[str], paired: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per noisy objective: how many members differ from the baseline beyond noise, and how many
    neighbouring pairs along the front (sorted by that objective) differ from each other. Latency
    is judged only on ``paired``: the study's ``latency_paired`` record, the front's members and
    the baseline timed together (see the module's doc)."""
    out: dict[str, dict[str, Any]] = {}
    for obj in objectives:
        if obj not in NOISY:
            continue
        if obj == "latency":
            out[obj] = _latency(front, baseline, paired)
            continue
        key = NOISY[obj][0]
        rows = [r for r in front if r.get(key) is not None and _se(r, obj) is not None]
        if len(rows) < len(front):
            out[obj] = {"measured": False}
            continue
        rows = sorted(rows, key=lambda r: r[key])
        pairs = sum(differ(a[key], _se(a, obj), b[key], _se(b, obj)) for a, b in zip(rows, rows[1:]))
        info: dict[str, Any] = {"measured": True, "members": len(rows), "neighbour_pairs": max(len(rows) - 1, 0),
                                "neighbour_pairs_resolved": pairs}
        if baseline and baseline.get(key) is not None and _se(baseline, obj) is not None:
            bse = _se(baseline, obj)
            info["differ_from_baseline"] = sum(differ(r[key], _se(r, obj), baseline[key], bse) for r in rows)
        out[obj] = info
    return out


def noise_line(res: dict[str, dict[str, Any]]) -> str:
    """One line, e.g. ``accuracy: 0 of 3 front members differ from the baseline beyond noise (95%),
    0 of 2 neighbours differ; latency: ...; the front is ordered by latency``."""
    parts, ordered, unresolved = [], [], []
    for obj, info in res.items():
        if not info.get("measured"):
            parts.append(f"{obj}: no interval (a zero-cost score, or not measured)")
            continue
        if info.get("paired") is False:
            parts.append(f"{obj}: no difference claimed: the front's members and the baseline were timed at different "
                         f"moments, and one timing's interval does not cover the machine's drift between them "
                         f"({info['why']})")
            continue
        text = f"{obj}:"
        if info.get("paired"):
            text = (f"{obj} (timed together, interleaved, {info['rounds']} rounds at the end of the search; "
                    f"paired ratios):")
        if "differ_from_baseline" in info:
            text += f" {info['differ_from_baseline']} of {info['members']} front members differ from the baseline"
            text += " beyond noise (95%),"
        elif info.get("baseline_paired") is False:
            text += " the baseline was not timed with them,"
        text += f" {info['neighbour_pairs_resolved']} of {info['neighbour_pairs']} neighbouring pairs differ"
        parts.append(text)
        if info["neighbour_pairs"] and info["neighbour_pairs_resolved"] == info["neighbour_pairs"]:
            ordered.append(obj)
        elif info["neighbour_pairs"]:
            unresolved.append(obj)
    if ordered:
        parts.append(f"the front is ordered by {' and '.join(ordered)}")
    if unresolved:
        parts.append(f"its {' and '.join(unresolved)} order is within noise")
    return "; ".join(parts)
