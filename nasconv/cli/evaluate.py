"""``nasconv evaluate``: briefly train (or score) one architecture and measure its latency."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from nasconv.cli._common import add_eval_args, eval_config, print_json
from nasconv.spaces import load_arch


def add_parser(sub: Any) -> None:
    q = sub.add_parser("evaluate", help="briefly train (or score) one architecture and measure its latency")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--arch", default="baseline", metavar="FILE.json|baseline")
    q.add_argument("--json", action="store_true", help="metrics as JSON (no progress output)")
    add_eval_args(q)


def _progress_printer(enabled: bool) -> Callable[[int, int, float], None] | None:
    if not enabled:
        return None

    def show(step: int, total: int, loss: float) -> None:  # loss: as last read from the device
        if step == total or step % 5 == 0:
            bar = "#" * int(30 * step / total)
            sys.stderr.write(f"\rtraining [{bar:<30}] {step}/{total} steps  loss {loss:.3f}")
            if step == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
    return show


def run(args: argparse.Namespace) -> int:
    from nasconv.evaluate import evaluate
    from nasconv.profile import resolve_device
    from nasconv.spaces import load_space

    space = load_space(args.space)
    arch = load_arch(space, args.arch)
    why = None
    if args.data is None:
        from nasconv.data import choose_default_data

        args.data, why = choose_default_data(args.data_dir, args.cache_dir)
    cfg = eval_config(args, space)
    resolve_device(cfg.device)  # fail before loading data
    if why and not args.json:
        print(f"data: {args.data} ({why}; --data cifar10:DIR names a copy)", flush=True)
    metrics = evaluate(arch, cfg, progress=_progress_printer(not args.json and sys.stderr.isatty()))
    if args.json:
        print_json(metrics)
        return 0
    from nasconv.budget import format_count

    print(f"{space.name} {arch.arch_hash}: {arch.ops_label()}")
    if cfg.proxy == "train":
        acc = "diverged at step %s" % metrics["diverged_step"] if metrics["diverged"] else f"{metrics['accuracy']:.4f}"
        print(f"accuracy      {acc}  ({cfg.data}, {metrics['steps']} steps in {metrics['precision']}, "
              f"{metrics['train_time_s']:.1f} s)")
    else:
        print(f"{cfg.proxy:<13} {metrics['score']:.6g}")
    if metrics.get("latency_ms") is not None:
        note = " (repeat cap hit: IQR above 5%)" if metrics["latency_capped"] else ""
        print(f"latency       {metrics['latency_ms']:.2f} ms +- {metrics['latency_iqr_ms']:.2f} (IQR) at batch "
              f"{metrics['latency_batch']}, {metrics['latency_resolution']}px, {metrics['device_name']}, "
              f"{metrics['threads']} threads{note}")
    print(f"params        {metrics['params']:,} ({format_count(metrics['params'])})")
    print(f"MACs          {metrics['macs']:,} ({format_count(metrics['macs'])})")
    return 0
