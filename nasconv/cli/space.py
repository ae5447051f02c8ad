"""``nasconv space list`` and ``nasconv space show NAME|PATH``."""

from __future__ import annotations

import argparse
from typing import Any

from nasconv.cli._common import Parser, print_json


def add_parser(sub: Any) -> None:
    q = sub.add_parser("space", help="list or show search spaces")
    ssub = q.add_subparsers(dest="space_command", metavar="{list,show,from-model}", parser_class=Parser)
    ssub.required = True
    r = ssub.add_parser("list", help="the shipped spaces")
    r.add_argument("--json", action="store_true")
    r = ssub.add_parser("show", help="stages, choices, size and cost range of one space")
    r.add_argument("space", metavar="NAME|PATH")
    r.add_argument("--json", action="store_true")


    from nasconv.cli import space_from_model

    space_from_model.add_parser(ssub)


def run(args: argparse.Namespace) -> int:
    if args.space_command == "from-model":
        from nasconv.cli import space_from_model

        return space_from_model.run(args)
    return show(args) if args.space_command == "show" else list_(args)


def list_(args: argparse.Namespace) -> int:
    from nasconv.spaces import list_spaces, load_space

    rows = []
    for name in list_spaces():
        s = load_space(name).summary()
        rows.append({k: s[k] for k in ("name", "description", "resolution", "architectures", "min_macs", "max_macs",
                                       "min_params", "max_params")} | {"baseline": s["baseline"]})
    if args.json:
        print_json(rows)
        return 0
    from nasconv._table import render_table
    from nasconv.budget import format_count

    print(render_table(["space", "input", "architectures", "MACs (min..max)", "params (min..max)", "description"],
                       [[r["name"], f"{r['resolution']}px", f"{r['architectures']:,}",
                         f"{format_count(r['min_macs'])}..{format_count(r['max_macs'])}",
                         f"{format_count(r['min_params'])}..{format_count(r['max_params'])}", r["description"]]
                        for r in rows], align="lrrrrl"))
    return 0


def show(args: argparse.Namespace) -> int:
    from nasconv.spaces import load_space

    s = load_space(args.space).summary()
    if args.json:
        print_json(s)
        return 0
    from nasconv._table import render_table

    print(f"{s['name']}: {s['description']}")
    if s.get("kind") == "model":  # a user's own model (nasconv space from-model)
        print(f"source: {s['source']}; model {s['factory']}, input {'x'.join(map(str, s['input']))}, "
              f"{s['num_classes']} classes; fixed: " + (", ".join(f["name"] for f in s["fixed"]) or "none"))
    else:
        print(f"source: {s['source']}; input {s['in_channels']}x{s['resolution']}x{s['resolution']}, "
              f"{s['num_classes']} classes, stem {s['stem']['type']} ({s['stem']['width']} ch)")
    rows = [[i, st["block"], st["stride"], ",".join(map(str, st["depths"])), ",".join(map(str, st["widths"])),
             len(st["choices"]), " ".join(st["choices"])] for i, st in enumerate(s["stages"])]
    print(render_table(["stage", "block", "stride", "depth", "width", "#ops", "operator choices"], rows,
                       align="llrrrrl"))
    print(f"architectures: {s['architectures']:,}")
    print(f"MACs:   min {s['min_macs']:,}  max {s['max_macs']:,}  baseline {s['baseline']['macs']:,}")
    print(f"params: min {s['min_params']:,}  max {s['max_params']:,}  baseline {s['baseline']['params']:,}")
    return 0
