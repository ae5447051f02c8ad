"""``nasconv cost``: exact params and MACs of an architecture, per part."""

from __future__ import annotations

import argparse
from typing import Any

from nasconv.cli._common import int_in, print_json
from nasconv.cli._task import add_task_args, load_task_arch, task_classes
from nasconv.errors import UsageError


def add_parser(sub: Any) -> None:
    from nasconv.spaces import MAX_RESOLUTION

    q = sub.add_parser("cost", help="exact params and MACs of an architecture, per stage")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--arch", default="baseline", metavar="FILE.json|baseline")
    q.add_argument("--resolution", type=int_in(1, MAX_RESOLUTION), default=None,
                   help=f"input size (default: the space's; at most {MAX_RESOLUTION})")
    q.add_argument("--measure", action="store_true", help="also build the model and measure with FlopCounterMode")
    q.add_argument("--json", action="store_true")
    add_task_args(q)


def run(args: argparse.Namespace) -> int:
    from nasconv.cost import block_out_size, estimate_cost, stem_size
    from nasconv.spaces import MAX_RESOLUTION, load_space

    if args.resolution is not None and not 1 <= args.resolution <= MAX_RESOLUTION:
        raise UsageError(f"--resolution must be in [1, {MAX_RESOLUTION}], got {args.resolution}")
    space = load_space(args.space)
    arch, note = load_task_arch(space, args.arch, task_classes(args))
    if note and not args.json:
        print(note)
    res = arch.resolution if args.resolution is None else args.resolution
    if args.resolution is not None:
        h = stem_size(arch.stem, res, res)[0]
        for st in arch.stages:
            h = block_out_size(h, st.stride)
        if h < 1:
            raise UsageError(f"--resolution {res} is too small for the {len(arch.stages)} stages of {space.name}")
    cost = estimate_cost(arch, res)
    out = {"space": space.name, "arch_hash": arch.arch_hash, "resolution": res, "num_classes": arch.num_classes,
           "ops": [s.op.label() for s in arch.stages], **cost.to_dict()}
    if args.measure:
        from nasconv.build import build_model
        from nasconv.flops import measure_cost

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
