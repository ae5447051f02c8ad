"""``nasconv pareto``: the Pareto front of a stored study as a table, JSON or plot."""

from __future__ import annotations

import argparse
from typing import Any

from nasconv.cli._common import print_json


def add_parser(sub: Any) -> None:
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("pareto", help="the Pareto front of a study: table, JSON, plot")
    q.add_argument("--study", required=True)
    q.add_argument("--storage", default=DEFAULT_STORAGE)
    q.add_argument("--plot", default=None, metavar="FILE.png", help="also write a plot (baseline marked)")
    q.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from nasconv.results import front_table, noise_line, plot_front, study_summary
    from nasconv.storage import open_study

    study, tables = open_study(args.study, args.storage, readonly=True)  # read-only media too
    summary = study_summary(study, tables)
    if args.plot:
        plot_front(study, args.plot, tables.rung_results(study.study_name))
    if args.json:
        print_json(summary)
        return 0
    print(f"study {summary['study']}: space {summary['space']}, budget {summary['budget']}, objectives "
          f"{','.join(summary['objectives'] or [])}; {summary['evaluated']} evaluated, {summary['failed']} failed, "
          f"{summary['rejected']} rejected, {summary['running']} running")
    if summary["per_rung"]:
        reached = ", ".join(f"rung {r}: {n}" for r, n in summary["per_rung"].items())
        print(f"multi-fidelity ({summary['fidelity'].get('rungs')} rungs): candidates by the highest rung reached: "
              f"{reached}; the front stands at rung {summary['rung']} (lower rungs: not promoted, not on it)")
    print(f"Pareto front ({len(summary['front'])} architectures, hypervolume {summary['hypervolume']:.4g}):")
    print(front_table(summary["front"], summary["baseline"]))
    if summary["noise"]:
        print(f"noise: {noise_line(summary['noise'])}")
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0
