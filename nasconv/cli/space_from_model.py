"""``nasconv space from-model MODULE:FACTORY --input 3x32x32 [--out space.yaml]``: a user's own
network as a search space file (thin over :func:`nasconv.custom.space_from_model`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasconv.cli._common import print_json
from nasconv.errors import UsageError


def add_parser(ssub: Any) -> None:
    r = ssub.add_parser("from-model", help="make a space file from your own PyTorch model",
                        description="Run the model once, list every nn.Conv2d a registered operator can replace "
                                    "(k x k, groups 1, dilation 1, 'same' padding) and every other one as fixed "
                                    "with the reason, group the replaceable ones into stages (consecutive ones at "
                                    "the same output size) and write an editable space file.")
    r.add_argument("factory", metavar="MODULE:FACTORY", help="a dotted module or a .py path, and the function "
                                                             "(or class) that returns the nn.Module")
    r.add_argument("--kwargs", default="{}", metavar="JSON", help="keyword arguments of the factory, as JSON")
    r.add_argument("--input", required=True, metavar="CxHxW", help="one input image's shape, e.g. 3x32x32")
    r.add_argument("--out", default=None, metavar="FILE.yaml", help="where to write the space (default: print it)")
    r.add_argument("--name", default=None, help="the space's name (default: the factory's)")
    r.add_argument("--init-from", default=None, metavar="STATE_DICT",
                   help="the model's trained weights (torch.save of a state dict): unreplaced layers start from "
                        "them, replaced ones from the operator's own initialisation")
    r.add_argument("--include-first", action="store_true",
                   help="make the first convolution (the one reading the image) a slot too")
    r.add_argument("--shared", choices=("slot", "refuse"), default="slot",
                   help="a convolution module called more than once: one slot (default) or refuse the model")
    r.add_argument("--ops", default=None, help="operator families to offer, comma-separated (default: all)")
    r.add_argument("--json", action="store_true", help="print the space's summary as JSON")


def run(args: argparse.Namespace) -> int:
    from nasconv.custom import space_from_model, space_yaml, write_space

    try:
        kwargs = json.loads(args.kwargs)
    except ValueError as exc:
        raise UsageError(f"--kwargs must be a JSON object, got {args.kwargs!r} ({exc.msg})") from None
    if not isinstance(kwargs, dict):
        raise UsageError(f"--kwargs must be a JSON object, got {args.kwargs!r}")
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    if ops is not None:
        from nasconv.ops import get_op

        for o in ops:
            get_op(o)  # an unknown name: one line, exit 2
    if args.out is not None and Path(args.out).suffix not in (".yaml", ".yml"):
        raise UsageError(f"--out must name a .yaml file, got {args.out!r}")
    base_dir = str(Path(args.out).parent) if args.out else ""
    space = space_from_model(args.factory, args.input, kwargs=kwargs, name=args.name, init_from=args.init_from,
                             include_first=args.include_first, shared=args.shared, ops=ops, base_dir=base_dir)
    if args.out is None and not args.json:
        print(space_yaml(space), end="")
        return 0
    if args.out is not None:
        write_space(space, args.out)
    if args.json:
        print_json({**space.summary(), "written": args.out})
        return 0
    b = space.cost_bounds()
    print(f"{args.out}: {len(space.slots)} replaceable convolutions in {len(space.stages)} stages, "
          f"{len(space.fixed)} fixed; {space.size:,} architectures, MACs {b['min_macs']:,}..{b['max_macs']:,}")
    for name, reason in space.fixed:
        print(f"  fixed {name}: {reason}")
    return 0
