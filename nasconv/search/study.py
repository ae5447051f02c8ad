"""A study's identity: its default name, and opening it only when it is the study this search is.

A study records the space (its name and the hash of its content), budget, objectives and
evaluation settings it was created with (written as user attributes, ``space`` last); a search
with other ones, or of a study nasconv did not make (plain Optuna's), or whose storage directions
are not its objectives', is refused in one line before any trial is created, instead of mixing
incomparable trials or failing every tell.

Studies written before the content hash existed carry the space's name only. One resumes when
its name matches and every architecture its trials hold (and its baseline) belongs to the space
as it is now; the hash is then stamped, so that from then on the content decides. A space file
that reuses the name with other choices or widths fails that check as soon as one stored
architecture falls outside it (and with a hash stamped, at once).
"""

from __future__ import annotations

import time
from typing import Any

import optuna

from nasconv._version import __version__
from nasconv.arch import ArchSpec
from nasconv.budget import Budget
from nasconv.errors import SpaceError, StorageError
from nasconv.evaluate import EvalConfig
from nasconv.search.config import SearchConfig
from nasconv.search.objectives import metric_names
from nasconv.search.samplers import make_sampler
from nasconv.spaces import SearchSpace
from nasconv.storage import is_database_locked

#: user attributes only nasconv writes: a study with none of them was not made by nasconv
NASCONV_ATTRS = ("eval_config", "sampler", "seed", "nasconv_version", "budget_limits", "budget", "objectives",
                 "settings_key", "space_hash", "space")
#: how long a study with no stamp and no trials, made by another driver, may take to be stamped
#: before it is taken for one nasconv did not make (its creator stamps it right after creating it)
STAMP_WAIT_S = 10.0


def default_study_name(space: SearchSpace, budget: Budget) -> str:
    return f"{space.name}-{budget.text or 'nobudget'}"


def settings_changes(stored: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``name: stored in the study, now`` for each keyed evaluation setting (nested ones dotted)
    that differs between two :meth:`EvalConfig.keyed_settings` dicts."""
    out = []
    for key in sorted(set(stored) | set(now)):
        a, b = stored.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_changes(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {a!r} in the study, {b!r} now")
    return out


#: the sampler of a new study when none is named: TPE, Optuna's own default for multi-objective
#: studies and ahead of NSGA-II and random in benchmarks/results/search_quality.md
DEFAULT_SAMPLER = "tpe"


def sampler_name(cfg: SearchConfig, attrs: dict[str, Any]) -> str:
    """The sampler named in ``cfg``, else the one the study began with, else :data:`DEFAULT_SAMPLER`."""
    return cfg.sampler or attrs.get("sampler") or DEFAULT_SAMPLER


def open_study(storage: optuna.storages.BaseStorage, name: str, cfg: SearchConfig, space: SearchSpace,
               budget: Budget) -> optuna.Study:
    """The study ``name`` (created and stamped when new), with ``cfg``'s sampler; refused when it
    was made for another space, budget, objectives or evaluation settings."""
    settings_key = cfg.eval.settings_key()
    identity = {"space": space.name, "space_hash": space.content_hash, "budget": budget.text,
                "objectives": list(cfg.objectives), "settings_key": settings_key}
    try:
        existing = optuna.study.get_all_study_names(storage)
    except Exception as exc:
        if is_database_locked(exc):
            raise
        raise StorageError(f"cannot read studies from {cfg.storage}: {exc}") from None
    created = False
    if name not in existing:
        try:
            optuna.create_study(study_name=name, storage=storage, directions=cfg.directions)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another driver created it a moment ago: join it (its identity is checked below)
        except Exception as exc:
            if is_database_locked(exc):
                raise
            raise StorageError(f"cannot create study {name!r}: {exc}") from None
    study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    stored_directions = [d.name.lower() for d in study.directions]
    if stored_directions != list(cfg.directions):
        raise StorageError(
            f"study {name!r} optimises {len(stored_directions)} value(s) ({', '.join(stored_directions)}), the "
            f"objectives {','.join(cfg.objectives)} are {len(cfg.directions)} ({', '.join(cfg.directions)})"
            + ("" if _is_nasconv(study.user_attrs) else "; it was not made by nasconv")
            + "; use another --study name")
    attrs = study.user_attrs
    n_trials = len(study.get_trials(deepcopy=False))
    deadline = time.monotonic() + STAMP_WAIT_S
    while not created and "space" not in attrs and n_trials == 0 and time.monotonic() < deadline:
        if _is_nasconv(attrs):
            break  # made by nasconv: stamped (again) below
        time.sleep(0.1)  # another driver's study, a moment from its stamp
        attrs = study.user_attrs
        n_trials = len(study.get_trials(deepcopy=False))
    if not _is_nasconv(attrs) and (n_trials or not created):
        raise StorageError(
            f"study {name!r} was not made by nasconv ({n_trials} trial(s), none of its settings stamped); "
            "use another --study name (an empty one left by a nasconv search that died at once can be "
            f"deleted: optuna delete-study --study-name {name} --storage URL)")
    if "space" not in attrs and n_trials == 0:
        # New, or its creator died before stamping it: "space" is written last, so a study
        # without it was never used.
        extra = {"eval_config": cfg.eval.to_dict(), "sampler": sampler_name(cfg, {}), "seed": cfg.seed,
                 "nasconv_version": __version__, "budget_limits": budget.to_dict(),
                 "fidelity": cfg.fidelity.identity()}
        if cfg.data_choice:
            extra["data_choice"] = f"{cfg.eval.data}: {cfg.data_choice}"
        stamp = {**extra, **identity}
        stamp["space"] = stamp.pop("space")  # last
        for key, value in stamp.items():
            study.set_user_attr(key, value)
    else:
        stored = attrs.get("fidelity") or {"rungs": 1, "eta": None}  # studies before rungs were flat
        # the lower-rung validation rule is not compared: a study keeps the one it was made with
        if {k: stored.get(k) for k in ("rungs", "eta")} != {k: cfg.fidelity.identity()[k] for k in ("rungs", "eta")}:
            raise StorageError(_fidelity_refusal(name, stored, cfg))
        legacy = "space_hash" not in attrs
        for key, value in identity.items():
            if key == "space_hash" and legacy:
                continue
            if attrs.get(key) != value:
                raise StorageError(_refusal(name, attrs, key, value, cfg.eval))
        if legacy:
            _check_legacy(study, name, space)
            study.set_user_attr("space_hash", space.content_hash)
    names = metric_names(cfg.objectives, cfg.eval.proxy)
    if study.metric_names != names:  # named in optuna-dashboard; studies made before names get them
        study.set_metric_names(names)
    study.sampler = make_sampler(sampler_name(cfg, study.user_attrs), cfg.seed, len(cfg.objectives))
    return study


def _fidelity_refusal(name: str, stored: dict[str, Any], cfg: SearchConfig) -> str:
    def text(f: dict[str, Any]) -> str:
        return f"{f.get('rungs')} rung(s)" + (f", eta {f['eta']:g}" if f.get("rungs", 1) > 1 else "")

    return (f"study {name!r} was run with {text(stored)}, this search asks for {text(cfg.fidelity.identity())}; "
            "results of other rung settings do not compare: use the study's --rungs/--eta, or another --study name")


def _is_nasconv(attrs: dict[str, Any]) -> bool:
    return any(k in attrs for k in NASCONV_ATTRS)


def _check_legacy(study: optuna.Study, name: str, space: SearchSpace) -> None:
    """A study stamped before the content hash: resumed only when all it holds fits ``space``."""
    def refuse(what: str) -> StorageError:
        return StorageError(f"study {name!r} was made for a space named {space.name!r} with other content "
                            f"({what}); use another --study name, or the space file it was made with")

    baseline = study.user_attrs.get("baseline")
    if isinstance(baseline, dict) and baseline.get("arch_hash") not in (None, space.baseline().arch_hash):
        raise refuse(f"its baseline is {baseline.get('arch_hash')}, the space's {space.baseline().arch_hash}")
    for t in study.get_trials(deepcopy=False):
        arch = t.user_attrs.get("arch")
        if arch is None:
            continue
        try:
            space.check_arch(ArchSpec.from_dict(arch))
        except (SpaceError, TypeError, KeyError, ValueError) as exc:
            raise refuse(f"trial {t.number}: {exc}") from None


def _refusal(name: str, attrs: dict[str, Any], key: str, value: Any, eval_config: EvalConfig) -> str:
    differs = f"{key} ({value!r})"
    if key == "space_hash":
        differs = (f"the content of space {attrs.get('space')!r} (hash {attrs.get('space_hash')} in the study, "
                   f"{value} now: other choices, grids or input)")
    if key == "settings_key" and isinstance(attrs.get("eval_config"), dict):
        try:
            stored = EvalConfig.from_dict(attrs["eval_config"]).keyed_settings()
        except TypeError:  # a setting this version does not know
            stored = attrs["eval_config"]
        changed = settings_changes(stored, eval_config.keyed_settings())
        differs = "evaluation settings: " + (", ".join(changed) if changed else "nasconv's version")
    return (f"study {name!r} belongs to space {attrs.get('space')!r}, budget "
            f"{attrs.get('budget')!r}, objectives {','.join(attrs.get('objectives') or [])} "
            f"(evaluation settings {attrs.get('settings_key')}); it differs in {differs}; "
            "use another --study name, or the study's settings to continue it")
