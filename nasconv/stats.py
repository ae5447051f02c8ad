"""The uncertainty of what nasconv measures: intervals for an accuracy, a mean over seeds and a
median latency, and whether two measurements differ beyond their noise.

All at 95% (two-sided). An accuracy measured once on n validation images is a binomial
proportion: Wilson's interval (good at small n and near 0 or 1), standard error sqrt(p(1-p)/n).
Several runs (seeds) of one architecture: mean, standard error of the mean, Student-t interval.
A median latency: the distribution-free interval between two order statistics of the timed
repeats (exact binomial ranks), which assumes nothing about the timing distribution.
How well one ranking agrees with another: Spearman's rho (average ranks for ties) and Kendall's
tau-b, with a percentile bootstrap interval over the ranked items (seeded: the same data give the
same interval).

May import: the standard library, numpy.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

Z95 = 1.959963984540054
#: Student t quantiles (0.975) for 1..30 degrees of freedom; beyond, a Cornish-Fisher expansion
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
#: bootstrap resamples of a rank correlation
BOOTSTRAP_RESAMPLES = 2000


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (3 decimals exact to 30)."""
    if df < 1:
        raise ValueError("a t quantile needs at least 1 degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z95
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def wilson_interval(p: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` observed on ``n`` trials."""
    if n <= 0:
        return (0.0, 1.0)
    z2 = Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else math.inf


def mean_interval(values: Sequence[float]) -> tuple[float, float, tuple[float, float]]:
    """Mean, its standard error and 95% t-interval over runs (one run: SE infinite)."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("no values")
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return m, math.inf, (-math.inf, math.inf)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    se = sd / math.sqrt(len(xs))
    h = t975(len(xs) - 1) * se
    return m, se, (m - h, m + h)


def median_interval(samples: Sequence[float]) -> tuple[float, float]:
    """Distribution-free interval of the median with coverage at least 95%: the j-th and
    (n+1-j)-th order statistics, j the largest rank with P(Binomial(n, 1/2) < j) <= 2.5%.
    Fewer than 6 samples cannot reach 95%: the interval is then their range."""
    xs = sorted(float(s) for s in samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples")
    if n > 1000:  # normal approximation of the ranks (the exact sum gets slow, and agrees)
        j = max(1, int(math.floor(n / 2 - Z95 * math.sqrt(n) / 2)))
    else:
        j, cdf, total = 0, 1, 2 ** n  # cdf = 2^n P(X <= j), summed as j grows
        while j + 1 <= n // 2 and cdf <= 0.025 * total:
            j += 1
            cdf += math.comb(n, j)
        j = max(j, 1)
    return (xs[j - 1], xs[n - j])


def accuracy_uncertainty(accuracy: float, n: int) -> dict[str, Any]:
    """An accuracy on ``n`` validation images: its binomial SE and 95% Wilson interval, as the
    trial attributes ``accuracy_se``, ``accuracy_ci``, ``val_images``."""
    return {"accuracy_se": binomial_se(accuracy, n), "accuracy_ci": list(wilson_interval(accuracy, n)),
            "val_images": int(n)}


def se_from_interval(lo: float, hi: float) -> float:
    """The standard error a 95% normal interval of that width implies (for comparisons)."""
    return (hi - lo) / (2 * Z95)


def differ(a: float, se_a: float, b: float, se_b: float) -> bool:
    """Whether two independent estimates differ at 95% (two-sided z on their difference)."""
    se = math.sqrt(se_a ** 2 + se_b ** 2)
    if not math.isfinite(se):
        return False
    if se == 0:
        return a != b
    return abs(a - b) > Z95 * se


# --- rank correlation (no scipy) ------------------------------------------------------------


def rankdata(values: Any) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy's ``rankdata(method="average")``; a
    NaN is a tie of none)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    order = np.argsort(x, kind="mergesort")
    position = np.empty(n, dtype=int)
    position[order] = np.arange(n)
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]] if n else np.zeros(0, dtype=bool)
    group = np.cumsum(starts)[position]  # 1-based tie group of each value
    bounds = np.r_[np.flatnonzero(starts), n]  # group g spans sorted positions bounds[g-1] .. bounds[g]-1
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def spearman(a: Any, b: Any) -> float:
    """Pearson correlation of the average ranks; NaN when either side is constant."""
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def kendall_tau_b(a: Any, b: Any) -> float:
    """Kendall's tau-b (ties corrected); NaN when either side is constant."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), k=1)
    dx, dy = dx[iu], dy[iu]
    s = float((dx * dy).sum())
    denom = math.sqrt(float((dx != 0).sum()) * float((dy != 0).sum()))
    return s / denom if denom > 0 else float("nan")


def bootstrap_interval(stat: Callable[[np.ndarray], float], n: int, *, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """2.5% and 97.5% quantiles of ``stat(idx)`` over ``n`` items drawn with replacement (``idx``:
    an index array; NaN values dropped)."""
    lo, hi = bootstrap_intervals(lambda i: [stat(i)], n, resamples=resamples, seed=seed)
    return lo[0], hi[0]


def bootstrap_intervals(stat: Callable[[np.ndarray], Sequence[float]], n: int, *,
                        resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[list[float], list[float]]:
    """:func:`bootstrap_interval` of each of the values ``stat(idx)`` returns, from the same draws."""
    rng = np.random.default_rng(seed)
    vals = np.array([stat(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    lo, hi = [], []
    for col in vals.T:
        col = col[~np.isnan(col)]
        q = np.quantile(col, [0.025, 0.975]) if len(col) else (math.nan, math.nan)
        lo.append(float(q[0]))
        hi.append(float(q[1]))
    return lo, hi


def bootstrap_rho(a: Any, b: Any, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """2.5% and 97.5% quantiles of Spearman's rho over items drawn with replacement (pairs kept)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bootstrap_interval(lambda i: spearman(x[i], y[i]), len(x), resamples=resamples, seed=seed)
