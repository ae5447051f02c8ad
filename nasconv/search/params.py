"""Optuna parameters <-> architectures: how each sampler sees a stage's operator, depth and width."""

from __future__ import annotations

import optuna

from nasconv.arch import ArchSpec
from nasconv.search.samplers import BY_FAMILY_SAMPLERS
from nasconv.spaces import SearchSpace


def suggest_arch(trial: optuna.trial.Trial, space: SearchSpace, *, ordinal: bool = True,
                 by_family: bool = False) -> ArchSpec:
    """The operator per stage, and depth/width where the stage searches them.

    The operator is one categorical over the stage's choices (``s<i>_op``: every choice, e.g.
    ``gc(groups=4)``, a level of its own), or with ``by_family`` the family (``s<i>_family``:
    ``gc``) and, where the family has several choices, which one (``s<i>_gc``: a conditional
    parameter). The flat form keeps random sampling uniform over architectures (``random``
    search as the NAS literature runs it) and gives NSGA-II's crossover whole choices to
    exchange (with the family form, Optuna's NSGA-II draws a conditional parameter at random
    instead of inheriting it). TPE gets the family form: its Parzen estimator carries what it
    learned about a family at one hyperparameter over to the others (with 30 levels per stage
    and a handful of good trials, the flat form's estimate is mostly its uniform prior), and its
    start-up trials are uniform over families, so that a family is not tried more often for
    having a longer hyperparameter grid (gc's five group counts against one ``standard``). GP,
    whose kernel needs every parameter in every trial, keeps the flat form. Measured in
    ``benchmarks/search_quality.py`` (the issue's setting) and, with more seeds, on a surrogate
    in ``benchmarks/sampler_surrogate.py``. A study keeps the form it began with
    (:func:`op_params_by_family`).

    With ``ordinal``, a depth or width whose choices are evenly spaced integers is an integer
    parameter (``suggest_int`` with that step), so that TPE, GP and NSGA-II's crossover see that
    3 lies between 2 and 4; otherwise (and in a study begun with categorical depths/widths, see
    :func:`ordinal_params`) a categorical.
    """
    choices = []
    for i, st in enumerate(space.stages):
        by_label = {op.label(): op for op in st.ops}
        if by_family:
            families: dict[str, list[str]] = {}
            for label, op in by_label.items():
                families.setdefault(op.name, []).append(label)
            members = families[trial.suggest_categorical(f"s{i}_family", list(families))]
            label = members[0] if len(members) == 1 else trial.suggest_categorical(
                f"s{i}_{by_label[members[0]].name}", members)
        else:
            label = trial.suggest_categorical(f"s{i}_op", list(by_label))
        depth = _suggest_level(trial, f"s{i}_depth", st.depths, ordinal)
        width = _suggest_level(trial, f"s{i}_width", st.widths, ordinal)
        choices.append((by_label[label], depth, width))
    return space.make_arch(choices)


def _suggest_level(trial: optuna.trial.Trial, name: str, values: tuple[int, ...], ordinal: bool) -> int:
    if len(values) == 1:
        return values[0]
    vs = sorted(values)
    step = vs[1] - vs[0]
    if ordinal and step > 0 and all(b - a == step for a, b in zip(vs, vs[1:])):
        return trial.suggest_int(name, vs[0], vs[-1], step=step)
    return trial.suggest_categorical(name, list(values))


def ordinal_params(study: optuna.Study) -> bool:
    """Whether this study's depth/width parameters are integers: yes for a new study; a study
    whose trials hold them as categoricals (as earlier nasconv versions made them) keeps them so,
    as Optuna fixes a parameter's distribution within a study."""
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            if name.endswith(("_depth", "_width")):
                return not isinstance(dist, optuna.distributions.CategoricalDistribution)
    return True


def op_params_by_family(study: optuna.Study, sampler: str) -> bool:
    """Whether this study's operators are family + hyperparameter parameters (suggest_arch's
    ``by_family``): as its trials hold them, whichever sampler continues it (Optuna fixes a
    parameter's distribution within a study); for a new study, as its sampler prefers."""
    for t in study.get_trials(deepcopy=False):
        if "s0_family" in t.distributions:
            return True
        if "s0_op" in t.distributions:
            return False
    return sampler in BY_FAMILY_SAMPLERS
