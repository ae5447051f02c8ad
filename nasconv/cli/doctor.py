"""``nasconv doctor``: what this machine offers nasconv, one line each, with what to do about what is missing."""

from __future__ import annotations

import argparse
from typing import Any

from nasconv.cli._common import print_json

_MARK = {"ok": "ok", "note": "--", "problem": "!!"}


def add_parser(sub: Any) -> None:
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("doctor", help="check torch, CUDA, bf16, Ray, the storage, datasets, cache, latency tables")
    q.add_argument("--storage", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL to check (default {DEFAULT_STORAGE})")
    q.add_argument("--data-dir", default=None, help="also look for datasets here (as search --data-dir)")
    q.add_argument("--cache-dir", default=None, help="the data cache to check (default: $NASCONV_CACHE_DIR, else "
                   "~/.cache/nasconv)")
    q.add_argument("--json", action="store_true", help="the checks as JSON")


def run(args: argparse.Namespace) -> int:
    from nasconv.doctor import run_checks

    checks = run_checks(storage=args.storage, data_dir=args.data_dir, cache_dir=args.cache_dir)
    if args.json:
        print_json([c.to_dict() for c in checks])
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{_MARK[c.status]:>2} {c.name:<{width}}  {c.found}" + (f"  -> {c.todo}" if c.todo else ""))
        problems = sum(c.status == "problem" for c in checks)
        print(f"{problems} problem(s); '--' lines are optional" if problems else
              "ready: `make search` or `nasconv search --space resnet20 --time 10m`")
    return 1 if any(c.status == "problem" for c in checks) else 0
