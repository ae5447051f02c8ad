"""Which operator family helps where: per-stage effects on each objective, with 95% intervals.

Model: an objective ``y`` of a candidate is additive over stages,
``y = b + sum_s beta[s, family_s] + (depth and width terms where the space varies them)``,
with ``beta[s, reference_s] = 0`` (the reference is ``standard`` where a stage offers it),
fitted over the study's evaluated candidates (one per architecture, each at its first
evaluation: every candidate has one, so all compare at equal fidelity). What is left over
(measurement noise, hyperparameters, interactions) is the residual.

A study has few candidates for many stage x family cells (resnet50: 32 effects), so plain least
squares is often not even defined. The effects therefore get a common normal prior,
``beta ~ N(0, tau^2)``, and ``lambda = tau^2 / sigma^2`` is averaged over a grid with weights from
the marginal likelihood (flat prior on log lambda; sigma^2 profiled out): a Bayesian ridge
regression whose intervals include the uncertainty about how large effects are. With many
candidates per cell it approaches least squares; a cell seen rarely is pulled toward zero and keeps
a wide interval. An effect is *resolved* when its 95% interval excludes zero.

The prior gives every cell a number, even one the candidates cannot tell apart from others (two
cells seen only together, in one candidate, get the same estimate and interval: only their sum is
measured, and the prior splits it). A cell is *identifiable* when its effect is estimable from
the candidates at hand: its indicator column (after the intercept and covariates are taken out)
is not a combination of the other cells' columns, i.e. the unit vector of that cell lies in the
row space of the design matrix. Cells that are not get no estimate and no interval, only the
cells they are confounded with; they are never resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

#: log10 of lambda = tau^2 / sigma^2 over which the model averages
LOG_LAMBDA_GRID = np.linspace(-4.0, 4.0, 33)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Effect:
    stage: int
    family: str
    #: candidates that used ``family`` in ``stage``
    n: int
    estimate: float
    low: float
    high: float
    #: False when the candidates cannot tell this cell apart from others (see the module's doc)
    identifiable: bool = True
    #: the cells whose indicator columns are this one's, or its opposite (``(stage, family)``)
    confounded_with: tuple[tuple[int, str], ...] = ()

    @property
    def resolved(self) -> bool:
        return self.identifiable and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, Any]:
        if not self.identifiable:
            return {"stage": self.stage, "family": self.family, "n": self.n, "estimate": None, "ci": None,
                    "resolved": False, "identifiable": False,
                    "confounded_with": [[s, f] for s, f in self.confounded_with]}
        return {"stage": self.stage, "family": self.family, "n": self.n, "estimate": self.estimate,
                "ci": [self.low, self.high], "resolved": self.resolved, "identifiable": True}


@dataclass
class EffectFit:
    """The effects on one objective; ``reason`` says why there are none."""

    objective: str
    n: int
    references: list[str]
    effects: list[Effect] = field(default_factory=list)
    residual_sd: float | None = None
    reason: str | None = None

    def get(self, stage: int, family: str) -> Effect | None:
        return next((e for e in self.effects if e.stage == stage and e.family == family), None)

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "n": self.n, "references": self.references,
                "residual_sd": self.residual_sd, "reason": self.reason,
                "effects": [e.to_dict() for e in self.effects]}


def family_of(label: str) -> str:
    """``tbc(blocks=2)`` -> ``tbc``."""
    return label.split("(", 1)[0].strip()


def stage_families(ops: str | Sequence[str]) -> list[str]:
    """A trial's ``ops`` attribute (``a | b | c``, or a list) as one family per stage."""
    labels = ops.split(" | ") if isinstance(ops, str) else list(ops)
    return [family_of(x) for x in labels]


def reference_families(choices: Sequence[Sequence[str]]) -> list[str]:
    """Per stage, the family effects are measured against: ``standard`` where offered, else the first."""
    return ["standard" if "standard" in fams else fams[0] for fams in choices]


def fit_effects(rows: Sequence[Sequence[str]], y: Sequence[float], references: Sequence[str], *,
                covariates: Any = None, objective: str = "y") -> EffectFit:
    """Stage x family effects on ``y`` (one value per row; a row is one family per stage).

    ``covariates`` (rows x k, e.g. each stage's depth and width where the space varies them) are
    nuisance terms with a flat prior: taken out of ``y`` and the indicators before the effects are
    fitted (their degrees of freedom are spent)."""
    y_arr = np.asarray(y, dtype=float)
    n = len(rows)
    fit = EffectFit(objective, n, list(references))
    if n < 3:
        fit.reason = f"{n} evaluated candidate(s); effects need at least 3"
        return fit
    columns = sorted({(s, f) for r in rows for s, f in enumerate(r) if f != references[s]})
    if not columns:
        fit.reason = "every candidate uses the reference family in every stage"
        return fit
    x = np.array([[1.0 if r[s] == f else 0.0 for s, f in columns] for r in rows])
    nuisance = np.ones((n, 1))
    if covariates is not None and np.size(covariates):
        cov_arr = np.asarray(covariates, dtype=float).reshape(n, -1)
        cov_arr = cov_arr[:, cov_arr.std(axis=0) > 0]
        nuisance = np.hstack([nuisance, cov_arr])
    # the part of y and of each indicator that the intercept and covariates cannot explain
    q, _ = np.linalg.qr(nuisance)
    rank = int(np.linalg.matrix_rank(nuisance))
    q = q[:, :rank]
    xc, yc = x - q @ (q.T @ x), y_arr - q @ (q.T @ y_arr)
    dof = n - rank
    if dof < 2:
        fit.reason = f"{n} candidates for {rank - 1} depth/width terms: too few to separate operator effects"
        return fit
    if not np.any(np.abs(yc) > 1e-12 * (1 + np.abs(y_arr).max())):
        fit.reason = "every candidate has the same value"
        return fit
    means, variances, sigma2s, logw = [], [], [], []
    gram = xc.T @ xc
    xty = xc.T @ yc
    # marginal likelihood of yc ~ N(0, sigma^2 (I + lam X X')), through the thin SVD X = U S V'
    u, sv, _ = np.linalg.svd(xc, full_matrices=False)
    eig, c2 = sv ** 2, (u.T @ yc) ** 2
    outside = max(float(yc @ yc) - float(c2.sum()), 0.0)  # the part of y no column can explain
    for log_lam in LOG_LAMBDA_GRID:
        lam = 10.0 ** log_lam
        sigma2 = (outside + float(np.sum(c2 / (1.0 + lam * eig)))) / dof  # at its maximum
        if sigma2 <= 0:
            continue
        logdet = float(np.sum(np.log1p(lam * eig)))
        logw.append(-0.5 * dof * np.log(sigma2) - 0.5 * logdet)
        a = gram + np.eye(len(columns)) / lam  # posterior precision / (1 / sigma^2)
        cov = np.linalg.inv(a) * sigma2
        means.append(cov @ xty / sigma2)
        variances.append(np.diag(cov))
        sigma2s.append(sigma2)
    if not logw:
        fit.reason = "the model could not be fitted"
        return fit
    w = np.exp(np.array(logw) - max(logw))
    w /= w.sum()
    m = np.array(means)
    mean = w @ m
    var = w @ (np.array(variances) + m ** 2) - mean ** 2
    sd = np.sqrt(np.clip(var, 0.0, None))
    counts = x.sum(axis=0)
    known = identifiable_columns(xc)
    fit.effects = [Effect(s, f, int(counts[j]), float(mean[j]), float(mean[j] - Z95 * sd[j]),
                          float(mean[j] + Z95 * sd[j]), bool(known[j]),
                          () if known[j] else tuple(columns[k] for k in same_columns(xc, j)))
                   for j, (s, f) in enumerate(columns)]
    fit.residual_sd = float(np.sqrt(w @ np.array(sigma2s)))
    return fit


def identifiable_columns(x: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """Per column of ``x``: whether its coefficient is estimable (least squares), i.e. the unit
    vector of that column lies in the row space of ``x``."""
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    basis = vt[sv > rtol * max(float(sv.max(initial=0.0)), 1e-300)]
    return 1.0 - np.sum(basis ** 2, axis=0) < 1e-6


def same_columns(x: np.ndarray, j: int, rtol: float = 1e-9) -> list[int]:
    """The other columns of ``x`` equal to column ``j`` or to its opposite (up to rounding)."""
    scale = rtol * (1.0 + float(np.abs(x).max(initial=0.0)))
    return [k for k in range(x.shape[1]) if k != j and (np.abs(x[:, k] - x[:, j]).max() < scale
                                                         or np.abs(x[:, k] + x[:, j]).max() < scale)]


def family_counts(rows: Sequence[Sequence[str]], n_stages: int) -> list[dict[str, int]]:
    """Per stage: how many candidates used each family."""
    out: list[dict[str, int]] = [{} for _ in range(n_stages)]
    for r in rows:
        for s, f in enumerate(r[:n_stages]):
            out[s][f] = out[s].get(f, 0) + 1
    return out
