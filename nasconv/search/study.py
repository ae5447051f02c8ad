"""A study's identity: its default name, and opening it only when it is the study this search is.

A study records the space, budget, objectives and evaluation settings it was created with
(written as user attributes, ``space`` last); a search with other ones is refused in one line
instead of mixing incomparable trials.
"""

from __future__ import annotations

from typing import Any

import optuna

from nasconv._version import __version__
from nasconv.budget import Budget
from nasconv.errors import StorageError
from nasconv.evaluate import EvalConfig
from nasconv.search.config import SearchConfig
from nasconv.search.samplers import make_sampler
from nasconv.spaces import SearchSpace
from nasconv.storage import is_database_locked


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


def open_study(storage: optuna.storages.BaseStorage, name: str, cfg: SearchConfig, space: SearchSpace,
               budget: Budget) -> optuna.Study:
    """The study ``name`` (created and stamped when new), with ``cfg``'s sampler; refused when it
    was made for another space, budget, objectives or evaluation settings."""
    settings_key = cfg.eval.settings_key()
    identity = {"space": space.name, "budget": budget.text, "objectives": list(cfg.objectives),
                "settings_key": settings_key}
    try:
        existing = optuna.study.get_all_study_names(storage)
    except Exception as exc:
        if is_database_locked(exc):
            raise
        raise StorageError(f"cannot read studies from {cfg.storage}: {exc}") from None
    if name not in existing:
        try:
            optuna.create_study(study_name=name, storage=storage, directions=cfg.directions)
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another driver created it a moment ago: join it (its identity is checked below)
        except Exception as exc:
            if is_database_locked(exc):
                raise
            raise StorageError(f"cannot create study {name!r}: {exc}") from None
    study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler())
    attrs = study.user_attrs
    n_trials = len(study.get_trials(deepcopy=False))
    if "space" not in attrs and n_trials == 0:
        # New, or its creator died before stamping it: "space" is written last, so a study
        # without it was never used.
        extra = {"eval_config": cfg.eval.to_dict(), "sampler": cfg.sampler, "seed": cfg.seed,
                 "nasconv_version": __version__, "budget_limits": budget.to_dict()}
        stamp = {**extra, **identity}
        stamp["space"] = stamp.pop("space")  # last
        for key, value in stamp.items():
            study.set_user_attr(key, value)
    else:
        for key, value in identity.items():
            if attrs.get(key) != value:
                raise StorageError(_refusal(name, attrs, key, value, cfg.eval))
    study.sampler = make_sampler(cfg.sampler, cfg.seed, len(cfg.objectives))
    return study


def _refusal(name: str, attrs: dict[str, Any], key: str, value: Any, eval_config: EvalConfig) -> str:
    differs = f"{key} ({value!r})"
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
