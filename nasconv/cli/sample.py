"""``nasconv sample``: a random architecture of a space, optionally within a budget."""

from __future__ import annotations

import argparse
import random
from typing import Any

from nasconv.cli._common import BUDGET_HELP, MAX_TRIES, SEED_LIMIT, int_in, nonblank, print_json
from nasconv.cli._task import add_task_args, task_classes, with_classes


def add_parser(sub: Any) -> None:
    q = sub.add_parser("sample", help="a random architecture of a space as JSON", epilog=f"--budget: {BUDGET_HELP}.")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--seed", type=int_in(0, SEED_LIMIT - 1), default=None,
                   help=f"in [0, {SEED_LIMIT - 1}] (default: a different architecture each time)")
    q.add_argument("--budget", type=nonblank, default=None, help="only architectures within this budget")
    q.add_argument("--tries", type=int_in(1, MAX_TRIES), default=10000, help=argparse.SUPPRESS)
    q.add_argument("--json", action="store_true", help="arch, hash and cost as one object")
    add_task_args(q)


def run(args: argparse.Namespace) -> int:
    from nasconv.budget import check_feasible, parse_budget
    from nasconv.cost import estimate_cost
    from nasconv.errors import BudgetError
    from nasconv.spaces import load_space

    space = with_classes(load_space(args.space), task_classes(args))
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
