"""Optuna samplers by name, seeded, and Optuna's own output kept quiet while nasconv reports progress."""

from __future__ import annotations

import warnings

import optuna

from nasconv.errors import UnknownNameError
from nasconv.search.config import SAMPLERS

#: samplers that see a stage's operator as family + conditional hyperparameter (see suggest_arch)
BY_FAMILY_SAMPLERS = ("tpe",)


def quiet_optuna() -> None:
    # nasconv prints its own progress; Optuna's per-trial INFO lines and its notes that
    # heartbeats and fail_stale_trials are "experimental" would drown it.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def make_sampler(name: str, seed: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    if name == "tpe":
        # group=True: the family's hyperparameter is a conditional parameter (suggest_arch's
        # by_family), which multivariate TPE handles only with the group decomposition.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True, group=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UnknownNameError("sampler", name, SAMPLERS)
