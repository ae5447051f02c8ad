"""Each evaluated trial's optuna-dashboard note: operators per stage, costs, latency with its IQR
and interval, accuracy with its interval, rung and device (markdown)."""

from __future__ import annotations

from typing import Any

import optuna

import nasconv._optuna as _optuna
from nasconv.budget import format_count
from nasconv.results.noise import fill_intervals


def _num(v: Any, digits: int = 3) -> str:
    return "?" if v is None else f"{float(v):.{digits}f}"


def trial_note(number: int, attrs: dict[str, Any], val_images: int | None = None) -> str:
    """The note of trial ``number`` from its user attributes (at its highest rung where promoted)."""
    a = fill_intervals(dict(attrs), val_images)
    lines = [f"### nasconv: trial {number} ({a.get('status', 'evaluated')})", "", "| stage | operator |", "|---|---|"]
    for s, label in enumerate(str(a.get("ops") or "?").split(" | ")):
        lines.append(f"| {s + 1} | `{label}` |")
    macs, params = a.get("macs"), a.get("params")
    lines += ["", f"- MACs **{format_count(int(macs)) if macs is not None else '?'}**, params "
                  f"**{format_count(int(params)) if params is not None else '?'}** (exact)"]
    if a.get("latency_ms") is not None:
        ci = a.get("latency_ci_ms") or [None, None]
        lines.append(f"- latency **{a['latency_ms']:.3f} ms** (IQR {_num(a.get('latency_iqr_ms'))} ms; 95% "
                     f"[{_num(ci[0])}, {_num(ci[1])}] ms; batch {a.get('latency_batch', 1)}, "
                     f"{a.get('latency_resolution', '?')} px)")
    if a.get("accuracy") is not None:
        ci = a.get("accuracy_ci") or [None, None]
        lines.append(f"- accuracy **{a['accuracy']:.4f}** (95% [{_num(ci[0], 4)}, {_num(ci[1], 4)}] on "
                     f"{a.get('val_images') or val_images or '?'} validation images"
                     + (f"; mean of {a['runs']} runs" if a.get("runs", 1) > 1 else "") + ")")
    elif a.get("score") is not None:
        lines.append(f"- {a.get('proxy', 'proxy')} score **{a['score']:.4g}** (a zero-cost score: no interval)")
    lines.append(f"- rung {a.get('rung', 0)}; device {a.get('device_name') or a.get('device', '?')} "
                 f"({a.get('precision', 'fp32')}); evaluation {_num(a.get('eval_time_s'), 1)} s")
    return "\n".join(lines) + "\n"


def save_trial_note(study: optuna.Study, trial: optuna.trial.BaseTrial, body: str) -> bool:
    """Write ``body`` as the trial's dashboard note unless it is already that; True when written."""
    from optuna_dashboard import get_note, save_note

    live = optuna.trial.Trial(study, _optuna.trial_id(trial))
    if get_note(live) == body:
        return False
    save_note(live, body)
    return True


def refresh_notes(study: optuna.Study, rows: Any = ()) -> int:
    """Every evaluated trial's note, at the highest rung it reached (``rows``: the study's rung
    results); how many notes changed."""
    from optuna.trial import TrialState

    from nasconv.results.rungs import at_rungs
    from nasconv.results.summary import val_images_of

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    n_val = val_images_of(study)
    return sum(save_trial_note(study, v, trial_note(v.number, v.user_attrs, n_val)) for v in at_rungs(complete, rows))
