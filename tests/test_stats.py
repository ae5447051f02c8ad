"""nasconv.stats: the intervals every reported figure carries, against textbook values and by
their coverage on simulated data."""

from __future__ import annotations

import math
import random

import pytest

from nasconv.stats import binomial_se, differ, mean_interval, median_interval, t975, wilson_interval


def test_wilson_matches_the_textbook():
    lo, hi = wilson_interval(0.5, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)
    lo, hi = wilson_interval(0.0, 20)  # never below 0, and not degenerate at p = 0
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    assert binomial_se(0.8, 2000) == pytest.approx(0.008944, abs=1e-6)  # the "±0.9 points"


@pytest.mark.parametrize("df,q", [(1, 12.706), (4, 2.776), (10, 2.228), (30, 2.042), (40, 2.021), (60, 2.000),
                                  (120, 1.980), (10**6, 1.960)])
def test_t_quantiles(df, q):
    assert t975(df) == pytest.approx(q, abs=2e-3)


def test_mean_interval_over_seeds():
    m, se, (lo, hi) = mean_interval([0.80, 0.81, 0.79])
    assert m == pytest.approx(0.80) and se == pytest.approx(0.01 / math.sqrt(3))
    assert hi - m == pytest.approx(4.303 * se)
    assert mean_interval([0.7])[1] == math.inf  # one run: no spread to estimate


def test_median_interval_ranks_are_exact():
    assert median_interval(range(1, 101)) == (40, 61)  # the tabulated ranks for n = 100
    assert median_interval([3, 1, 2]) == (1, 3)  # too few for 95%: the range


@pytest.mark.parametrize("n", [10, 25, 200])
def test_median_interval_covers_95_percent_of_skewed_timings(n):
    rng, hits, reps = random.Random(n), 0, 1500
    for _ in range(reps):
        xs = [5 + rng.lognormvariate(0, 0.5) for _ in range(n)]  # latency-like: a floor, a long tail
        lo, hi = median_interval(xs)
        hits += lo <= 6.0 <= hi  # the true median: 5 + e^0
    assert hits / reps >= 0.94


def test_wilson_covers_95_percent():
    rng, hits, reps, p, n = random.Random(1), 0, 3000, 0.8, 200
    for _ in range(reps):
        k = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson_interval(k / n, n)
        hits += lo <= p <= hi
    assert 0.935 <= hits / reps <= 0.965


def test_differ():
    assert differ(0.80, 0.009, 0.75, 0.009) and not differ(0.80, 0.009, 0.79, 0.009)
    assert not differ(1.0, math.inf, 0.0, 0.0)  # no interval: nothing is claimed
    assert differ(2.0, 0.0, 1.0, 0.0) and not differ(1.0, 0.0, 1.0, 0.0)  # exact values


def test_rank_statistics_against_textbook_values():
    from nasconv.stats import kendall_tau_b, rankdata, spearman

    assert list(rankdata([3.0, 1.0, 2.0, 2.0])) == [4.0, 1.0, 2.5, 2.5]  # ties share their average rank
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826817, abs=1e-9)  # scipy's value
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant side has no ranking
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)


def test_bootstrap_rho_is_seeded_and_covers_the_truth():
    from nasconv.stats import bootstrap_rho, spearman

    rng = random.Random(3)
    x = [rng.gauss(0, 1) for _ in range(40)]
    y = [a + rng.gauss(0, 1) for a in x]  # correlated: rho about 0.69
    lo, hi = bootstrap_rho(x, y, resamples=500, seed=7)
    assert (lo, hi) == bootstrap_rho(x, y, resamples=500, seed=7)  # the same draws, the same interval
    assert lo < spearman(x, y) < hi and lo > 0.3 and hi < 0.95
    noise = [rng.gauss(0, 1) for _ in range(40)]
    lo, hi = bootstrap_rho(x, noise, resamples=500)
    assert lo < 0 < hi  # no relation: the interval reaches zero
