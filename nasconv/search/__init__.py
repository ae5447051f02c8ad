"""The search: Optuna ask/tell over a space, budget first, evaluations on a runner, one study database.

Parts, one job each: ``config`` (what is asked: :class:`SearchConfig`, frozen and checked),
``samplers`` (Optuna samplers by name), ``params`` (Optuna parameters <-> architectures),
``study`` (a study's identity: opened only when it is this search's), ``liveness`` (heartbeats,
orphaned trials of dead drivers, Ctrl-C between writes), ``objectives`` (values, constraints,
placeholders, the hypervolume reference), ``progress`` (the status handed to callbacks; the tqdm
bar), ``fidelity`` (the rung schedule), ``promotion`` (which candidates a rung promotes),
``scheduler`` (promotions and repeats in flight, their results), ``screen`` (one-shot screening
by a supernet before the loop: ``--screen oneshot``), ``latency_gate`` (a latency
table's predictions and the budget checked on them), ``trials`` (one trial's way: ask, propose,
tell, fail), ``driver`` (the loop).

May import: every library layer below it (spaces, cost, evaluate, storage, runners, results);
not export, not the CLI.
"""

from nasconv.search.config import OBJECTIVES, RUNNERS, SAMPLERS, SearchConfig, SearchResult
from nasconv.search.driver import SearchDriver, run_search
from nasconv.search.objectives import TRIAL_ATTRS
from nasconv.search.params import op_params_by_family, ordinal_params, suggest_arch
from nasconv.search.progress import ProgressBar, SearchCallback, SearchStatus
from nasconv.search.samplers import BY_FAMILY_SAMPLERS, make_sampler
from nasconv.search.screen import screen_study_name
from nasconv.search.study import default_study_name, settings_changes

__all__ = ["BY_FAMILY_SAMPLERS", "OBJECTIVES", "RUNNERS", "SAMPLERS", "TRIAL_ATTRS", "ProgressBar", "SearchCallback",
           "SearchConfig", "SearchDriver", "SearchResult", "SearchStatus", "default_study_name", "make_sampler",
           "op_params_by_family", "ordinal_params", "run_search", "screen_study_name", "settings_changes",
           "suggest_arch"]
