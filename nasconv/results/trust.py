"""How far to trust one-shot screening: does the supernet rank candidates as stand-alone training does?

A study searched with one-shot screening keeps the supernet's scores in a second Optuna study
beside it in the same storage, named by :func:`screen_study_name` (the search writes it, the
results read it: the rule lives here, below both). The candidates the screening sent on to
stand-alone training carry their supernet accuracy (``oneshot_accuracy``) on the main study's
trial. Over those trained both ways, the trust is Spearman's rho between the supernet accuracy and
the stand-alone accuracy (rung 0: the first training, as the report and the front read it), with a
seeded percentile-bootstrap 95% interval over the candidates (:mod:`nasconv.stats`).

The verdict is *weak* when fewer than :data:`MIN_PAIRS` candidates were trained both ways or the
interval reaches 0: the data do not show that the supernet ranks as training does, so screening
may be no better than drawing candidates at random; *against* when the whole interval is below 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

import nasconv._optuna as _optuna
from nasconv.results.front import EVALUATED, first_per_architecture
from nasconv.stats import BOOTSTRAP_RESAMPLES, bootstrap_rho, spearman
from nasconv.storage import open_study

#: what the screen study's name adds to the main study's
SCREEN_SUFFIX = ".oneshot"
#: fewer candidates trained both ways than this: no rank correlation is worth stating
MIN_PAIRS = 4
WEAK_MEANING = ("the supernet's ranking is not shown to agree with stand-alone training here: treat screening as "
                "a random pre-filter")
AGAINST_MEANING = ("the supernet ranks against stand-alone training here: screening is worse than a random "
                   "pre-filter")
SUPPORTED_MEANING = "the supernet's ranking agrees with stand-alone training here (the interval excludes 0)"


def screen_study_name(name: str) -> str:
    """The name of the study holding the one-shot screening of the study ``name``."""
    return f"{name}{SCREEN_SUFFIX}"


@dataclass(frozen=True)
class ScreeningTrust:
    """Spearman's rho between supernet and stand-alone accuracy over ``n`` candidates trained both ways."""

    n: int
    rho: float | None
    ci: tuple[float, float] | None
    #: candidates the supernet scored (the screen study's completed trials); None when not known
    screened: int | None = None
    resamples: int = BOOTSTRAP_RESAMPLES
    #: two-sided permutation p-value of rho (exact up to 8 candidates): a percentile bootstrap
    #: over a handful of candidates is too narrow (4 in agreement give [1, 1]), so a verdict needs both
    p_value: float | None = None

    @property
    def verdict(self) -> str:
        """``supported`` (interval above 0), ``against`` (below 0) or ``weak`` (too few, or reaching 0)."""
        if self.n < MIN_PAIRS or self.rho is None or math.isnan(self.rho) or self.ci is None:
            return "weak"
        significant = self.p_value is None or self.p_value <= 0.05
        if self.ci[0] > 0 and significant:
            return "supported"
        return "against" if self.ci[1] < 0 and significant else "weak"

    @property
    def weak(self) -> bool:
        return self.verdict != "supported"

    @property
    def meaning(self) -> str:
        return {"supported": SUPPORTED_MEANING, "against": AGAINST_MEANING}.get(self.verdict, WEAK_MEANING)

    def measured(self) -> str:
        """What was measured, with its interval (no verdict)."""
        of = f" (of {self.screened:,} screened)" if self.screened is not None else ""
        both = f"{self.n} candidate{'s' if self.n != 1 else ''} trained both ways{of}"
        if self.n < MIN_PAIRS:
            return f"only {both}; a rank correlation needs at least {MIN_PAIRS}"
        if self.rho is None or math.isnan(self.rho) or self.ci is None:
            return f"{both}: no rank correlation (one of the accuracies is the same for all)"
        p = f", permutation p = {self.p_value:.3f}" if self.p_value is not None else ""
        return (f"Spearman rho {self.rho:+.2f} [95%: {self.ci[0]:+.2f}, {self.ci[1]:+.2f}{p}] between supernet and "
                f"stand-alone accuracy over {both}")

    def line(self) -> str:
        """One line for people: the figure, the verdict and what it means."""
        verdict = "" if self.verdict == "supported" else f"{self.verdict}: "
        return f"screening trust: {verdict}{self.measured()}: {self.meaning}"

    def to_dict(self) -> dict[str, Any]:
        rho = None if self.rho is None or math.isnan(self.rho) else self.rho
        return {"n": self.n, "screened": self.screened, "spearman_rho": rho,
                "rho_ci95": list(self.ci) if self.ci and rho is not None else None,
                "interval": f"95% percentile bootstrap over the candidates ({self.resamples} resamples, seeded)",
                "p_value": self.p_value, "test": "two-sided permutation test of rho (exact up to 8 candidates)",
                "verdict": self.verdict, "weak": self.weak, "meaning": self.meaning, "line": self.line()}


def trained_both_ways(trials: Sequence[optuna.trial.FrozenTrial]) -> list[tuple[float, float]]:
    """(supernet accuracy, stand-alone accuracy) of each evaluated main-study candidate that has
    both, one per architecture, in trial order."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("status") in EVALUATED]
    return [(float(t.user_attrs["oneshot_accuracy"]), float(t.user_attrs["accuracy"]))
            for t in first_per_architecture(done)
            if t.user_attrs.get("oneshot_accuracy") is not None and t.user_attrs.get("accuracy") is not None]


def screening_trust(trials: Sequence[optuna.trial.FrozenTrial], *, screened: int | None = None,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> ScreeningTrust | None:
    """The trust over the main study's ``trials``; None when the study has no screening (no
    screen study, ``screened`` None, and no trial carries a supernet accuracy)."""
    pairs = trained_both_ways(trials)
    if screened is None and not any(t.user_attrs.get("oneshot_accuracy") is not None for t in trials):
        return None
    if len(pairs) < MIN_PAIRS:
        return ScreeningTrust(len(pairs), None, None, screened, resamples)
    oneshot, alone = [p[0] for p in pairs], [p[1] for p in pairs]
    rho = spearman(oneshot, alone)
    ci = None if math.isnan(rho) else bootstrap_rho(oneshot, alone, resamples=resamples, seed=seed)
    if ci is not None and any(math.isnan(v) for v in ci):
        ci = None
    p = None if ci is None else permutation_p(oneshot, alone, rho, seed=seed)
    return ScreeningTrust(len(pairs), rho, ci, screened, resamples, p)


def permutation_p(x: Sequence[float], y: Sequence[float], rho: float, *, seed: int = 0,
                  resamples: int = 5000) -> float:
    """Two-sided p-value of Spearman's ``rho`` of ``x`` and ``y`` under independence: every
    ordering of ``y``'s ranks up to 8 values (exact), else ``resamples`` seeded shuffles (the
    observed ordering counted once, so never 0). Spearman = Pearson of the ranks, so one matrix
    product scores every ordering."""
    import itertools

    import numpy as np

    from nasconv.stats import rankdata

    rx, ry = rankdata(np.asarray(x, dtype=float)), rankdata(np.asarray(y, dtype=float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))
    if denom == 0:
        return 1.0
    if len(ry) <= 8:
        perms = ry[np.array(list(itertools.permutations(range(len(ry)))))]
        extra = 0
    else:
        rng = np.random.default_rng(seed)
        perms = np.stack([rng.permutation(ry) for _ in range(resamples)])
        extra = 1
    hits = int((np.abs(perms @ rx / denom) >= abs(rho) - 1e-9).sum())
    return (hits + extra) / (len(perms) + extra)


def screen_study(study: optuna.Study) -> optuna.Study | None:
    """The screen study beside ``study`` in its storage; None when it was not screened."""
    storage = _optuna.storage_of(study)
    name = screen_study_name(study.study_name)
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return optuna.load_study(study_name=name, storage=storage)


def screened_count(study: optuna.Study) -> int | None:
    """Candidates the supernet scored: the screen study's ``scored`` (set by the search; over-budget
    proposals left out), else its completed trials (counted, no trial read); None when there is none."""
    storage = _optuna.storage_of(study)
    try:
        sid = storage.get_study_id_from_name(screen_study_name(study.study_name))
    except KeyError:
        return None
    scored = storage.get_study_user_attrs(sid).get("scored")
    return int(scored) if scored is not None else _optuna.count_trials(storage, sid, TrialState.COMPLETE)


def study_trust(study: optuna.Study, *, seed: int = 0) -> ScreeningTrust | None:
    """:func:`screening_trust` of a stored study (its screen study counted, not read)."""
    return screening_trust(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                           screened=screened_count(study), seed=seed)


def trust_line_of(url: str, name: str) -> str | None:
    """The one line of the study ``name`` in the storage ``url`` (what ``nasconv search`` prints
    last); None when it was not screened."""
    study, tables = open_study(name, url, readonly=True)
    tables.dispose()
    if screened_count(study) is None:  # not screened: the trials need not be read
        return None
    trust = study_trust(study)
    return trust.line() if trust else None
