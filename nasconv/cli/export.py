"""``nasconv export``: architectures of a study or a space as standalone PyTorch files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nasconv.cli._common import MAX_TRIAL_NUMBER, int_in, print_json, study_name
from nasconv.errors import UsageError
from nasconv.spaces import load_arch


def add_parser(sub: Any) -> None:
    from nasconv.export import BEST_METRICS
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser(
        "export", help="write architectures as standalone PyTorch files (+ metadata, weights, TorchScript, ONNX)",
        description="Export from a study (--study with --trial N, --pareto or --best METRIC) or one architecture "
                    "of a space (--space with --arch). Per architecture DIR gets <name>.py (torch only: the "
                    "operators, the network and build()), <name>.json (spec, metrics, provenance, evaluation "
                    "settings) and, when asked, <name>.pt, <name>.torchscript.pt, <name>.onnx.",
        epilog="Load one back with: python -c \"from nasconv.export import load; model = load('DIR/<name>')\"")
    q.add_argument("--study", type=study_name, default=None, help="study to export from")
    q.add_argument("--storage", default=None, help=f"SQLAlchemy URL of the study (default {DEFAULT_STORAGE})")
    sel = q.add_mutually_exclusive_group()
    sel.add_argument("--trial", type=int_in(0, MAX_TRIAL_NUMBER), default=None, metavar="N",
                     help="one trial, by number")
    sel.add_argument("--pareto", action="store_true", help="every architecture on the study's Pareto front")
    sel.add_argument("--best", default=None, choices=list(BEST_METRICS), help="the best evaluated, feasible trial "
                     "on one metric")
    q.add_argument("--space", default=None, metavar="NAME|PATH", help="export from a space instead of a study")
    q.add_argument("--arch", default=None, metavar="FILE.json|baseline", help="with --space: the architecture")
    q.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    q.add_argument("--weights", action="store_true", help="also the trained weights kept by the search "
                   "(search with --keep-weights --full-proxy)")
    q.add_argument("--torchscript", action="store_true", help="also a traced TorchScript model")
    q.add_argument("--onnx", action="store_true", help="also an ONNX model (needs nasconv[onnx])")
    q.add_argument("--force", action="store_true", help="overwrite existing files of the same names (a symbolic "
                   "link is replaced itself, its target untouched; a folder, FIFO, socket or device never)")
    q.add_argument("--json", action="store_true", help="list what was written as JSON")


def run(args: argparse.Namespace) -> int:
    from nasconv.export import SUFFIXES, export_space_arch, export_study

    if (args.study is None) == (args.space is None):
        raise UsageError("give --study NAME (with --trial N, --pareto or --best METRIC) or --space NAME "
                         "--arch FILE.json|baseline")
    chosen = [flag for flag, on in (("--trial", args.trial is not None), ("--pareto", args.pareto),
                                    ("--best", args.best is not None)) if on]
    if args.study is not None:
        if args.arch is not None:
            raise UsageError("--arch goes with --space; a study's architectures are chosen with --trial, "
                             "--pareto or --best")
        if not chosen:
            raise UsageError("--study needs one of --trial N, --pareto, --best METRIC")
        if args.trial is not None and args.trial < 0:
            raise UsageError(f"--trial must be >= 0, got {args.trial}")
        files = export_study(args.study, args.out, storage=args.storage, trial=args.trial, pareto=args.pareto,
                             best=args.best, weights=args.weights, torchscript=args.torchscript, onnx=args.onnx,
                             force=args.force)
    else:
        if chosen or args.storage is not None:
            raise UsageError(f"{(chosen or ['--storage'])[0]} goes with --study, not --space")
        if args.arch is None:
            raise UsageError("--space needs --arch FILE.json|baseline")
        if args.weights:
            raise UsageError("--weights needs a study: an architecture given with --space was never trained")
        from nasconv.spaces import load_space

        space = load_space(args.space)
        arch = load_arch(space, args.arch)
        files = export_space_arch(space, arch, args.out, arch_source=args.arch, torchscript=args.torchscript,
                                  onnx=args.onnx, force=args.force)
    by_name: dict[str, list[str]] = {}
    for f in files:
        if f.name.endswith(".json"):
            by_name[f.name[:-5]] = []
    for f in files:
        for n in by_name:
            if f.name.startswith(n) and f.name[len(n):] in SUFFIXES.values():
                by_name[n].append(f.name)
    if args.json:
        print_json([{"name": n, "folder": str(Path(args.out)), "files": sorted(fs)} for n, fs in by_name.items()])
        return 0
    for n, fs in by_name.items():
        meta = json.loads((Path(args.out) / f"{n}.json").read_text())
        inf = meta["inference"]
        print(f"{n}: {meta['ops']}  ({inf['params']:,} params, {inf['macs']:,} MACs at {inf['resolution']}px)")
        print(f"  wrote {', '.join(sorted(fs))} in {args.out}")
    first = next(iter(by_name))
    print(f"next: python -c \"from nasconv.export import load; model = load('{Path(args.out) / first}')\"")
    return 0
