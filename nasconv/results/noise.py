"""What the noise allows: each front member's intervals, and which differences they resolve.

An accuracy measured on n validation images has a binomial standard error (Wilson interval); a
median latency a distribution-free interval over its timed repeats (nasconv.stats). MACs and
parameters are exact. Two members (or a member and the baseline) differ on an objective when
their difference exceeds 1.96 standard errors of the difference; the front is "ordered by" an
objective when every pair of neighbours along it differs so.
"""

from __future__ import annotations

from typing import Any, Sequence

from nasconv.stats import accuracy_uncertainty, differ, se_from_interval

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


def resolution(front: Sequence[dict[str, Any]], baseline: dict[str, Any] | None,
               objectives: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per noisy objective: how many members differ from the baseline beyond noise, and how many
    neighbouring pairs along the front (sorted by that objective) differ from each other."""
    out: dict[str, dict[str, Any]] = {}
    for obj in objectives:
        if obj not in NOISY:
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
        text = f"{obj}:"
        if "differ_from_baseline" in info:
            text += f" {info['differ_from_baseline']} of {info['members']} front members differ from the baseline"
            text += " beyond noise (95%),"
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
