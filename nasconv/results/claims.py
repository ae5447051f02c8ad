""""What this study says": sentences generated from the report's numbers, each backed by an interval.

A stage x family effect is stated only where its 95% interval excludes zero; an effect on the
other objective that is not resolved is said so ("no resolvable accuracy cost", with the
interval). Everything else is counted as not resolved, and the front's noise line is repeated.
"""

from __future__ import annotations

from typing import Any


def _fmt(v: float) -> str:
    a = abs(v)
    return f"{v:.2f}" if a < 10 else f"{v:.1f}" if a < 100 else f"{v:.0f}"


def _interval(e: dict[str, Any], sign: float = 1.0) -> str:
    lo, hi = sorted((sign * e["ci"][0], sign * e["ci"][1]))
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def _phrase(name: str, e: dict[str, Any], unit: str) -> str:
    """One resolved effect in words, e.g. ``cuts latency by 11 ms [8, 14]``."""
    v = e["estimate"]
    if name == "latency":
        return (f"cuts latency by {_fmt(-v)} ms {_interval(e, -1)}" if v < 0
                else f"adds {_fmt(v)} ms of latency {_interval(e)}")
    what = "accuracy" if unit == "points" else unit
    word = "points of accuracy" if unit == "points" else what
    return (f"gains {_fmt(v)} {word} {_interval(e)}" if v > 0
            else f"costs {_fmt(-v)} {word} {_interval(e, -1)}")


def _unresolved(name: str, e: dict[str, Any] | None, unit: str) -> str:
    if e is None:
        return f"{name} not measured"
    if e.get("missing"):
        return f"{name} not in the latency table"
    if e.get("estimate") is None:
        return f"{name} not identifiable from these candidates"
    what = "accuracy" if name == "accuracy" else name
    return (f"no resolvable {what} {'cost' if name == 'accuracy' else 'change'} "
            f"({_fmt(e['estimate'])} {_interval(e)} {unit})")


def claims(report: dict[str, Any]) -> dict[str, Any]:
    """``{"sentences": [...], "resolved": n, "unresolved": n, "text": paragraph}``."""
    eff = report.get("effects") or {}
    fits = eff.get("objectives") or {}
    sentences: list[str] = []
    resolved = unresolved = 0
    cells: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
    for name, fit in fits.items():
        for e in fit.get("effects", []):
            cells.setdefault((e["stage"], e["family"]), {})[name] = e
    confounded: list[tuple[int, str, list[Any]]] = []
    for (stage, family), by_obj in sorted(cells.items()):
        hits = [n for n, e in by_obj.items() if e["resolved"]]
        if all(e.get("identifiable") is False for e in by_obj.values()):
            confounded.append((stage, family, next(iter(by_obj.values())).get("confounded_with") or []))
            continue
        if not hits:
            unresolved += 1
            continue
        resolved += 1
        parts = [_phrase(n, by_obj[n], fits[n]["unit"]) for n in hits]
        parts += [_unresolved(n, by_obj.get(n), fits[n]["unit"]) for n in fits if n not in hits]
        ref = (eff.get("references") or [])[stage] if stage < len(eff.get("references") or []) else "the reference"
        n_used = next(iter(by_obj.values()))["n"]
        used = f" (in {n_used} candidates)" if n_used else ""  # a latency table's effect needs none
        sentences.append(f"stage {stage + 1}: {family}{used} {parts[0]}"
                         + (f", {', '.join(parts[1:])}" if len(parts) > 1 else "") + f", relative to {ref}.")
    n = eff.get("candidates", 0)
    if not fits or all(f.get("reason") for f in fits.values()):
        reason = next((f["reason"] for f in fits.values() if f.get("reason")), "no measured objective")
        sentences.append(f"No stage x family effect can be estimated: {reason}.")
    elif not resolved and unresolved:
        sentences.append(f"No stage x family effect is resolved at 95% with these {n} candidates: every interval "
                         + ("of the combinations they can tell apart " if confounded else "")
                         + "includes zero; more candidates or a longer proxy are needed to say which convolution "
                         "to use where.")
    elif unresolved:
        sentences.append(f"The other {unresolved} stage x family combinations tried are not resolved (their 95% "
                         "intervals include zero on every objective).")
    if (fits.get("latency") or {}).get("source") == "latency table":
        sentences.append("Latency effects come from the device's latency table (its parts' differences, no training "
                         "needed), at the device's speed when it was profiled.")
    elif any(e["resolved"] for e in (fits.get("latency") or {}).get("effects", [])):
        sentences.append("Latency effects are fitted over candidates timed one at a time during the search: the "
                         "machine's drift between those timings is part of their residual, not separated from the "
                         "operators.")
    if confounded:
        stage, family, twins = next(((s, f, w) for s, f, w in confounded if w), confounded[0])
        example = (f" (e.g. stage {stage + 1}: {family} is confounded with "
                   + " or ".join(f"stage {s + 1}: {f}" for s, f in twins) + ")") if twins else ""
        sentences.append(f"{len(confounded)} stage x family combination{'s' if len(confounded) > 1 else ''} cannot be "
                         f"told apart from others with these candidates{example}: no number is given for "
                         f"{'them' if len(confounded) > 1 else 'it'}.")
    on_front = eff.get("on_front") or []
    if report.get("front") and on_front:
        sentences.append("The front uses " + "; ".join(f"stage {s + 1}: {', '.join(f) or '-'}"
                                                       for s, f in enumerate(on_front)) + ".")
    if report.get("noise_line"):
        sentences.append(f"Front vs noise: {report['noise_line']}.")
    return {"sentences": sentences, "resolved": resolved, "unresolved": unresolved, "not_identifiable": len(confounded),
            "text": " ".join(sentences)}
