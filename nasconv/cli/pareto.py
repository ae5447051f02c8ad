"""``nasconv pareto``: the Pareto front of a stored study as a table, JSON or plot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasconv.cli._common import open_nasconv_study, print_json, study_name
from nasconv.outputs import check_output_file


def add_parser(sub: Any) -> None:
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("pareto", help="the Pareto front of a study: table, JSON, plot")
    q.add_argument("--study", type=study_name, required=True)
    q.add_argument("--storage", default=DEFAULT_STORAGE)
    q.add_argument("--plot", default=None, metavar="FILE.png", help="also write a plot (baseline marked)")
    q.add_argument("--force", action="store_true",
                   help="overwrite an existing plot file (a symbolic link there is replaced itself, its target "
                        "untouched; a folder, FIFO, socket or device never)")
    q.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from nasconv.results import front_table, noise_line, plot_front, study_summary
    from nasconv.results.trust import study_trust

    if args.plot:  # refused before anything is read, as report's --out (nasconv.outputs: what may be replaced)
        check_output_file(Path(args.plot).expanduser(), force=args.force, what="the plot")
    study, tables = open_nasconv_study(args.study, args.storage)  # read-only media too
    summary = study_summary(study, tables)
    trust = study_trust(study)  # None: not searched with one-shot screening
    summary["screening_trust"] = trust.to_dict() if trust else None
    if args.plot:
        plot_front(study, str(Path(args.plot).expanduser()), tables.rung_results(study.study_name), force=args.force)
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
    if trust:
        print(trust.line())
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0
