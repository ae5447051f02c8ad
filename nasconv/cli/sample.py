"""``nasconv sample``: a random architecture of a space, optionally within a budget."""

from __future__ import annotations

import argparse
import random
from typing import Any

from nasconv.cli._common import BUDGET_HELP, print_json


def add_parser(sub: Any) -> None:
    q = sub.add_parser("sample", help="a random architecture of a space as JSON", epilog=f"--budget: {BUDGET_HELP}.")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--seed", type=int, default=None)
    q.add_argument("--budget", default=None, help="only architectures within this budget")
    q.add_argument("--tries", type=int, default=10000, help=argparse.SUPPRESS)
    q.add_argument("--json", action="store_true", help="arch, hash and cost as one object")


def run(args: argparse.Namespace) -> int:
    from nasconv.budget import check_feasible, parse_budget
    from nasconv.cost import estimate_cost
    from nasconv.errors import BudgetError
    from nasconv.spaces import load_space

    space = load_space(args.space)
    budget = parse_budget(args.budget)
    check_feasible(budget, space.cost_bounds(), space.name)
    rng = random.Random(args.seed)
    for _ in range(args.tries):
        arch = space.sample(rng)
        cost = estimate_cost(arch)
        if not budget.violations(macs=cost.macs, params=cost.params):
            break
    else:
        raise BudgetError(f"no architecture within {budget.text} among {args.tries} random samples of {space.name}; "
                          "raise the budget or --tries")
    if args.json:
        print_json({"arch": arch.to_dict(), "arch_hash": arch.arch_hash, "params": cost.params, "macs": cost.macs})
    else:
        print(arch.to_json(indent=2))
    return 0
