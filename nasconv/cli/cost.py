"""``nasconv cost``: exact params and MACs of an architecture, per part."""

from __future__ import annotations

import argparse
from typing import Any

from nasconv.cli._common import print_json
from nasconv.spaces import load_arch


def add_parser(sub: Any) -> None:
    q = sub.add_parser("cost", help="exact params and MACs of an architecture, per stage")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--arch", default="baseline", metavar="FILE.json|baseline")
    q.add_argument("--resolution", type=int, default=None, help="input size (default: the space's)")
    q.add_argument("--measure", action="store_true", help="also build the model and measure with FlopCounterMode")
    q.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from nasconv.cost import estimate_cost
    from nasconv.spaces import load_space

    space = load_space(args.space)
    arch = load_arch(space, args.arch)
    cost = estimate_cost(arch, args.resolution)
    out = {"space": space.name, "arch_hash": arch.arch_hash, "resolution": args.resolution or arch.resolution,
           "ops": [s.op.label() for s in arch.stages], **cost.to_dict()}
    if args.measure:
        from nasconv.build import build_model
        from nasconv.flops import measure_cost

        res = args.resolution or arch.resolution
        measured = measure_cost(build_model(arch), (arch.in_channels, res, res))
        out["measured"] = {"params": measured.params, "macs": measured.macs}
    if args.json:
        print_json(out)
        return 0
    from nasconv._table import render_table

    print(f"{space.name} {arch.arch_hash}: {arch.ops_label()}  @ {out['resolution']}px")
    rows = [[p["name"], f"{p['params']:,}", f"{p['macs']:,}"] for p in out["parts"]]
    rows.append(["total", f"{cost.params:,}", f"{cost.macs:,}"])
    if args.measure:
        rows.append(["measured", f"{out['measured']['params']:,}", f"{out['measured']['macs']:,}"])
    print(render_table(["part", "params", "MACs"], rows))
    return 0
