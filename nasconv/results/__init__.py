"""Reading results: the Pareto front and its hypervolume, trial and study summaries, the front as
a table or a plot (what ``nasconv pareto`` and the search driver share), and the study report:
stage x family effects, importances, the sentences they support, HTML, dashboard notes; and for a
study searched with one-shot screening, how far its screening is trusted (``nasconv.results.trust``,
which also names the screen study: the search imports that rule from here).

May import: errors, stats, budget, spaces, storage, latency (its table's effects), profile, the Optuna
compatibility module, optuna-dashboard; nothing of search or the CLI.
"""

from nasconv.results.front import EVALUATED, feasible_front, first_per_architecture, hypervolume, losses
from nasconv.results.noise import fill_intervals, noise_line, resolution
from nasconv.results.plot import plot_front
from nasconv.results.rungs import at_rungs, rung_counts, rung_front, study_front
from nasconv.results.summary import baseline_summary, study_summary, trial_summary, val_images_of
from nasconv.results.table import front_table
from nasconv.results.trust import ScreeningTrust, screen_study_name, screening_trust, study_trust

__all__ = ["EVALUATED", "at_rungs", "baseline_summary", "feasible_front", "fill_intervals", "first_per_architecture",
           "front_table", "hypervolume", "losses", "noise_line", "plot_front", "resolution", "rung_counts",
           "rung_front", "ScreeningTrust", "screen_study_name", "screening_trust", "study_front", "study_summary",
           "study_trust", "trial_summary", "val_images_of"]
