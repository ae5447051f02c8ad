"""nasconv.results.importance: PED-ANOVA importances with a 95% interval that contains its estimate."""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasconv.results.importance import param_importances, recentred_interval

unit = st.floats(0.0, 1.0, allow_nan=False)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(unit, st.lists(unit, min_size=10, max_size=60))
def test_the_interval_contains_its_estimate_whatever_the_resamples(estimate, draws):
    lo, hi = recentred_interval(estimate, draws)
    assert 0.0 <= lo <= estimate <= hi <= 1.0
    spread = np.percentile(draws, 97.5) - np.percentile(draws, 2.5)
    assert hi - lo <= spread + 1e-12  # the resamples' spread, not more


def test_a_biased_bootstrap_keeps_its_spread_around_the_estimate():
    """The issue's case: estimate 0.079, resamples between 0.017 and 0.067 (all below it)."""
    draws = list(np.linspace(0.017, 0.067, 21))
    lo, hi = recentred_interval(0.079, draws)
    q_lo, med, q_hi = np.percentile(draws, [2.5, 50, 97.5])
    assert (lo, hi) == pytest.approx((0.079 - (med - q_lo), 0.079 + (q_hi - med))) and lo < 0.079 < hi
    assert hi - lo == pytest.approx(np.percentile(draws, 97.5) - np.percentile(draws, 2.5))


def _trials(seed: int, n: int = 24) -> list[optuna.trial.FrozenTrial]:
    rng = random.Random(seed)
    dists = {"op0": optuna.distributions.CategoricalDistribution(["standard", "gc", "tbc"]),
             "op1": optuna.distributions.CategoricalDistribution(["standard", "gc"]),
             "depth": optuna.distributions.IntDistribution(1, 4)}
    out = []
    for _ in range(n):
        p = {"op0": rng.choice(["standard", "gc", "tbc"]), "op1": rng.choice(["standard", "gc"]),
             "depth": rng.randint(1, 4)}
        acc = 0.8 + 0.05 * (p["op0"] == "gc") + 0.01 * p["depth"] + rng.gauss(0, 0.02)
        out.append(optuna.trial.create_trial(params=p, distributions=dists, values=[acc]))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_every_reported_importance_lies_in_its_interval(seed):
    """Real PED-ANOVA over six simulated studies: each importance within its own 95% interval."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    imp = param_importances(_trials(seed), [optuna.study.StudyDirection.MAXIMIZE], ["accuracy"], resamples=12,
                            seed=seed)["accuracy"]
    assert imp["params"] and "median falls on the estimate" in imp["interval"]
    for p in imp["params"]:
        assert p["ci"] is not None and p["ci"][0] <= p["importance"] <= p["ci"][1], p
        assert 0.0 <= p["bootstrap_median"] <= 1.0
