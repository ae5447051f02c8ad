"""The report's latency effects from the device's latency table, where one exists: no training needed.

With a lookup table (``nasconv latency profile``) for the study's space on the study's device
setting, the report's stage x family effects on latency are the table's part differences
(:mod:`nasconv.latency.effects`), for every family the space offers, in place of the effects
fitted over timed candidates (kept under ``latency_fitted``). Without one, the report is as it was.

The study's setting: the device, threads, torch version and latency batch its candidates were
timed with (the most common over them), else what its evaluation settings name on this machine;
the table must be for the same device, batch, torch version and precision, and for the same
threads where those are known (else the table's setting with this process's thread count first).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import optuna
import torch

from nasconv.errors import NasconvError
from nasconv.latency import PRECISION, Calibration, DeviceSetting, LatencyTable, effects_dict, table_effects
from nasconv.profile import device_name, resolve_device
from nasconv.spaces import SearchSpace, load_space
from nasconv.storage import NasconvTables

#: what the report calls these effects
LABEL = "from the latency table, no training needed"


def _common(candidates: Sequence[optuna.trial.FrozenTrial], key: str) -> Any:
    seen = Counter(t.user_attrs[key] for t in candidates if t.user_attrs.get(key) is not None)
    return seen.most_common(1)[0][0] if seen else None


def study_setting(study: optuna.Study, candidates: Sequence[optuna.trial.FrozenTrial], table: LatencyTable,
                  space: SearchSpace) -> DeviceSetting | None:
    """The table's setting that the study's latency was (or would be) timed in; None when the table
    has none for it (or the study timed latency at another resolution than the table's)."""
    ev = study.user_attrs.get("eval_config") or {}
    if ev.get("latency_resolution") not in (None, space.resolution):
        return None
    name = _common(candidates, "device_name")
    if name is None:
        try:
            name = device_name(resolve_device(str(ev.get("device") or "cpu")))
        except NasconvError:  # a GPU study read where there is none
            return None
    batch = int(ev.get("latency_batch") or _common(candidates, "latency_batch") or 1)
    version = _common(candidates, "torch_version") or torch.__version__
    threads = _common(candidates, "threads") or ev.get("latency_threads")
    options = [s for s in table.settings_for(space.name)
               if (s.device_name, s.batch, s.torch_version, s.precision) == (name, batch, version, PRECISION)
               and (threads is None or s.threads == int(threads))]
    options.sort(key=lambda s: (s.threads != torch.get_num_threads(), s.threads))
    return options[0] if options else None


def table_latency_fit(study: optuna.Study, tables: NasconvTables, candidates: Sequence[optuna.trial.FrozenTrial],
                      effects: dict[str, Any], *, storage: str = "") -> dict[str, Any] | None:
    """The latency effects as the report's fitted ones are laid out (:func:`nasconv.results.report.stage_effects`),
    from the table; None when no table exists for the study's space and device setting."""
    try:
        space = load_space(study.user_attrs.get("space") or "")
    except NasconvError:
        return None
    references = effects.get("references") or []
    if len(references) != len(space.stages):
        return None
    table = LatencyTable(tables, storage)
    setting = study_setting(study, candidates, table, space)
    if setting is None:
        return None
    try:
        found = table.calibration(setting, space.name)
        if found is None:
            return None
        cal = Calibration.from_dict(found[1])
    except NasconvError:  # a corrupt calibration: the fitted effects stand
        return None
    data = effects_dict(table_effects(space, table, setting, cal, references))
    counts = effects.get("counts") or [{} for _ in space.stages]
    for e in data["effects"]:
        e.update(n=counts[e["stage"]].get(e["family"], 0), identifiable=True)
    resolved = sum(e["resolved"] for e in data["effects"])
    return {"objective": "latency", "n": 0, "references": references, "residual_sd": None, "reason": None,
            "unit": "ms", "better": -1, "key": "latency_ms", "source": "latency table", "label": LABEL,
            "setting": data["setting"], "effects": data["effects"],
            "method": {k: data[k] for k in ("slope", "slope_rel_sd", "pass_rel_sd")},
            "note": (f"Latency effects {LABEL}: {resolved} of {len(data['effects'])} resolved at 95%, from the parts "
                     f"profiled on {setting.describe()}: each stage built with the family versus its reference, "
                     "averaged over the stage's widths, depths and input widths and over the family's settings, "
                     f"scaled by the calibration's slope ({cal.slope:.3g}); intervals from the parts' own intervals "
                     "and the spread between profiling passes (independent parts: variances summed) and the "
                     "slope's bootstrap (nasconv.latency.effects).")}


def with_table_latency(study: optuna.Study, tables: NasconvTables, candidates: Sequence[optuna.trial.FrozenTrial],
                       effects: dict[str, Any], *, storage: str = "") -> dict[str, Any]:
    """``effects`` with its latency effects from the table where one exists (the fitted ones kept
    under ``latency_fitted``); unchanged otherwise."""
    fit = table_latency_fit(study, tables, candidates, effects, storage=storage)
    if fit is None:
        return effects
    objectives = dict(effects.get("objectives") or {})
    fitted = objectives.pop("latency", None)
    objectives["latency"] = fit
    return {**effects, "objectives": objectives, "latency_fitted": fitted}
