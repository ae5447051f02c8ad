"""Exporting trials of a study: one, its Pareto front or the best on one metric, with the
weights a search kept when asked.

Only weights of the architecture itself are exported: the brief-training proxy usually trains a
reduced copy (fewer blocks, narrower), whose weights fit no exported network.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from nasconv.arch import ArchSpec, OpChoice
from nasconv.checkpoint import model_from_payload
from nasconv.data.task import spec_class_count
from nasconv.errors import StorageError, UsageError
from nasconv.export.errors import ExportError, one_line
from nasconv.export.write import ExportItem, check_onnx_available, write_exports
from nasconv.paths import file_stem
from nasconv.storage.connect import open_study
from nasconv.storage.weights import load_weights, weights_path

#: ``--best`` metric -> (trial attribute, direction)
BEST_METRICS = {"accuracy": ("score", "max"), "latency": ("latency_ms", "min"), "macs": ("macs", "min"),
                "params": ("params", "min")}


def select_trials(study: Any, *, trial: int | None = None, pareto: bool = False,
                  best: str | None = None, rungs: Any = ()) -> list[Any]:
    """The trials ``--trial N`` / ``--pareto`` / ``--best METRIC`` name, checked to have been evaluated.
    With a multi-fidelity study's ``rungs`` (rung results), ``--pareto`` and ``--best`` choose among
    the candidates at the highest rung reached."""
    from optuna.trial import TrialState

    from nasconv.results import at_rungs, study_front

    name = study.study_name
    if sum((trial is not None, pareto, best is not None)) != 1:
        raise UsageError("choose one of --trial N, --pareto, --best METRIC")
    trials = study.get_trials(deepcopy=False)
    if trial is not None:
        found = [t for t in trials if t.number == trial]
        if not found:
            span = f"trials 0..{max(t.number for t in trials)}" if trials else "no trials"
            raise ExportError(f"study {name!r} has no trial {trial} ({span})")
        t = found[0]
        if t.state != TrialState.COMPLETE:
            reason = t.user_attrs.get("fail_reason")
            raise ExportError(f"trial {trial} of study {name!r} did not complete (state {t.state.name}"
                              f"{': ' + reason if reason else ''})")
        if t.user_attrs.get("status") not in ("evaluated", "cached") or "arch" not in t.user_attrs:
            why = t.user_attrs.get("reject_reason") or f"status {t.user_attrs.get('status')!r}"
            raise ExportError(f"trial {trial} of study {name!r} was never evaluated ({why})")
        return [t]
    if pareto:
        front = study_front(study, rungs)
        if not front:
            raise ExportError(f"study {name!r} has no evaluated trial on its Pareto front yet")
        return front
    if best not in BEST_METRICS:
        raise UsageError(f"--best must be one of {', '.join(BEST_METRICS)}, got {best!r}")
    key, direction = BEST_METRICS[best]
    if rungs:
        views = at_rungs([t for t in trials if t.state == TrialState.COMPLETE], rungs)
        top = max((v.user_attrs["rung"] for v in views), default=0)
        trials = [v for v in views if v.user_attrs["rung"] == top]
    done = [t for t in trials
            if t.state == TrialState.COMPLETE and t.user_attrs.get("status") in ("evaluated", "cached")
            and all(v <= 0 for v in t.constraints.values()) and isinstance(t.user_attrs.get(key), (int, float))
            and math.isfinite(t.user_attrs[key])]
    if not done:
        raise ExportError(f"study {name!r} has no evaluated, feasible trial with a {key} value")
    sign = -1 if direction == "max" else 1
    return [min(done, key=lambda t: (sign * t.user_attrs[key], t.number))]


def export_study(study_name: str, out: str | Path, *, storage: str | None = None, trial: int | None = None,
                 pareto: bool = False, best: str | None = None, weights: bool = False, torchscript: bool = False,
                 onnx: bool = False, force: bool = False) -> list[Path]:
    """Export trials of a study (one, its Pareto front, or the best on one metric)."""
    from nasconv.storage import DEFAULT_STORAGE, parse_url, safe_url

    storage = storage or DEFAULT_STORAGE
    if onnx:
        check_onnx_available()
    url = parse_url(storage)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).expanduser().is_file():
        # opening it would create an empty database (and its folder) just to find no study there
        raise ExportError(f"no study {study_name!r}: the study database {url.database} does not exist")
    study, tables = open_study(study_name, storage, readonly=True)
    rungs = tables.rung_results(study_name)
    tables.dispose()
    attrs = study.user_attrs
    items = []
    for t in select_trials(study, trial=trial, pareto=pareto, best=best, rungs=rungs):
        arch = ArchSpec.from_dict(t.user_attrs["arch"])
        trained = _trained_classes(attrs, t)
        if trained and trained != arch.num_classes:
            # a study made before the head followed the data: its networks were trained with the
            # data's classes, and that is the network exported
            arch = replace(arch, num_classes=trained)
        name = f"{file_stem(study_name)}-trial{t.number}"
        info: dict[str, Any] = {
            "source": {"study": study_name, "trial": t.number, "storage": safe_url(storage),
                       "status": t.user_attrs.get("status"), "space": attrs.get("space")},
            "metrics": {k: v for k, v in t.user_attrs.items() if k not in ("arch", "driver", "status", "ops")}
            | {"values": list(t.values or []), "objectives": attrs.get("objectives"),
               "constraints": dict(t.constraints)},
            "evaluation": {"config": attrs.get("eval_config"), "settings_key": attrs.get("settings_key"),
                           "budget": attrs.get("budget"), "objectives": attrs.get("objectives")},
        }
        item = ExportItem(name, arch, info, provenance=f"From study {study_name}, trial {t.number}.")
        if weights:
            kept = _load_kept(storage, study_name, arch.arch_hash)
            if kept is None:
                raise ExportError(f"no kept weights for trial {t.number} of study {study_name!r} (looked for "
                                  f"{weights_path(storage, study_name, arch.arch_hash)}); search with "
                                  "--keep-weights --full-proxy to keep them")
            trained = ArchSpec.from_dict(kept["trained_arch"])
            if _comparable(trained) != _comparable(arch):
                raise ExportError(f"the kept weights of trial {t.number} of study {study_name!r} belong to the "
                                  f"reduced proxy copy ({trained.ops_label()}; depths "
                                  f"{[s.depth for s in trained.stages]}, widths {[s.width for s in trained.stages]})"
                                  ", not to the architecture; search with --full-proxy to export trained weights")
            # built when written, so that a whole front's networks are never in memory at once
            item.load_model = functools.partial(_kept_model, storage, study_name, arch.arch_hash, t.number)
            item.weights = True
            cfg = (attrs.get("eval_config") or {}).get("train") or {}
            info["weights"] = {"trained_on": (attrs.get("eval_config") or {}).get("data"),
                               "resolution": cfg.get("resolution"), "num_classes": kept["num_classes"],
                               "in_channels": kept["in_channels"], "steps": t.user_attrs.get("steps"),
                               "accuracy": t.user_attrs.get("accuracy")}
            item.provenance += (f" Weights: {t.user_attrs.get('steps')} steps of brief training on "
                                f"{info['weights']['trained_on']} at {cfg.get('resolution')} px.")
        items.append(item)
    return write_exports(items, out, torchscript=torchscript, onnx=onnx, force=force)


def _trained_classes(attrs: dict[str, Any], t: Any) -> int | None:
    """The class count the trial's network was trained with: recorded with the evaluation, in the
    study's data record, else read from the data's folder names (nothing decoded)."""
    n = t.user_attrs.get("data_classes") or (attrs.get("data") or {}).get("num_classes")
    if n:
        return int(n)
    ev = attrs.get("eval_config") or {}
    return spec_class_count(ev["data"], ev.get("holdout")) if ev.get("data") else None


def _load_kept(storage: str, study: str, arch_hash: str) -> dict[str, Any] | None:
    try:
        return load_weights(storage, study, arch_hash)
    except StorageError as exc:  # an unreadable file is this export's failure
        raise ExportError(str(exc)) from None


def _kept_model(storage: str, study: str, arch_hash: str, number: int) -> nn.Module:
    kept = _load_kept(storage, study, arch_hash)
    if kept is None:
        raise ExportError(f"the kept weights of trial {number} of study {study!r} disappeared during the export")
    try:
        return model_from_payload(kept)
    except RuntimeError as exc:
        raise ExportError(f"the kept weights of trial {number} do not fit its architecture: {one_line(exc)}") from None


def _comparable(arch: ArchSpec) -> ArchSpec:
    """What must agree between a trained copy and the architecture: not the class count (the
    proxy trains on its data set's classes) nor dynconv's temperature (annealed in training)."""
    stages = tuple(replace(s, op=OpChoice.make(s.op.name, {k: v for k, v in s.op.kwargs.items()
                                                          if not (s.op.name == "dynconv" and k == "temperature")}))
                   for s in arch.stages)
    return replace(arch, num_classes=0, stages=stages)

