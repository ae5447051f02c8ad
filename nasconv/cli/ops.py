"""``nasconv ops``: every operator with its cost at one shape."""

from __future__ import annotations

import argparse
from typing import Any

from nasconv.cli._common import MAX_KERNEL, int_in, parse_shape, print_json
from nasconv.errors import NasconvError, UsageError


def add_parser(sub: Any) -> None:
    q = sub.add_parser("ops", help="list operators with their cost at one shape")
    q.add_argument("--shape", default="256,256,14,14", help="C_IN,C_OUT,H,W (default: ResNet-50 stage 3)")
    q.add_argument("--kernel", type=int_in(1, MAX_KERNEL), default=3, help=f"odd, at most {MAX_KERNEL} (default 3)")
    q.add_argument("--stride", type=int, default=1, choices=(1, 2))
    q.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from nasconv.ops import get_op, list_ops, op_cost

    c_in, c_out, h, w = parse_shape(args.shape)
    if args.kernel < 1 or args.kernel % 2 == 0:
        raise UsageError(f"--kernel must be a positive odd integer (padding k//2 keeps the size), got {args.kernel}")
    ref = op_cost("standard", c_in, c_out, args.kernel, h, w, args.stride)
    rows = []
    for name in list_ops():
        spec = get_op(name)
        hyper = {k: v.default for k, v in spec.hyper.items()}
        entry: dict[str, Any] = {
            "name": name, "summary": spec.summary, "paper": spec.paper,
            "hyperparameters": {k: {"default": v.default, "doc": v.doc} for k, v in spec.hyper.items()}}
        try:
            cost = op_cost(name, c_in, c_out, args.kernel, h, w, args.stride)
            entry.update(params=cost.params, macs=cost.macs,
                         params_vs_standard=cost.params / ref.params, macs_vs_standard=cost.macs / ref.macs)
        except NasconvError as exc:
            entry.update(params=None, macs=None, error=str(exc))
        entry["defaults"] = {k: v for k, v in hyper.items() if v is not None}
        rows.append(entry)
    if args.json:
        print_json({"shape": {"in_channels": c_in, "out_channels": c_out, "height": h, "width": w,
                              "kernel_size": args.kernel, "stride": args.stride}, "ops": rows})
        return 0
    from nasconv._table import render_table

    print(f"operators at {c_in}->{c_out}, {h}x{w}, k={args.kernel}, stride {args.stride} (default hyperparameters)")
    table = []
    for r in rows:
        hp = ", ".join(f"{k}={v}" for k, v in r["defaults"].items()) or "-"
        if r["params"] is None:
            table.append([r["name"], hp, "n/a", "n/a", "", "", r["error"]])
        else:
            table.append([r["name"], hp, f"{r['params']:,}", f"{r['macs']:,}", f"{r['params_vs_standard']:.3f}",
                          f"{r['macs_vs_standard']:.3f}", r["summary"]])
    print(render_table(["op", "hyperparameters", "params", "MACs", "params/std", "MACs/std", "what"], table,
                       align="llrrrrl"))
    return 0
