"""``nasconv evaluate``: briefly train (or score) one architecture and measure its latency."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable

from nasconv.cli._common import add_eval_args, eval_config, print_json
from nasconv.cli._task import load_task_arch


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
    from nasconv.data import load_dataset
    from nasconv.data.task import describe_task
    from nasconv.evaluate import evaluate
    from nasconv.profile import resolve_device
    from nasconv.spaces import load_space

    space = load_space(args.space)
    why = None
    if args.data is None:
        from nasconv.data import choose_default_data

        args.data, why = choose_default_data(args.data_dir, args.cache_dir)
    cfg = eval_config(args, space)
    resolve_device(cfg.device)  # fail before loading data
    if why and not args.json:
        print(f"data: {args.data} ({why}; --data cifar10:DIR names a copy)", flush=True)
    # what is read, in one line; the head and the metric follow the data (nasconv.data.task)
    ds = load_dataset(cfg.data, data_dir=cfg.data_dir, seed=cfg.train.seed, cache_dir=cfg.cache_dir,
                      holdout=cfg.holdout)
    summary = describe_task(ds, cfg.data, holdout=cfg.holdout,
                            train_resolution=cfg.train.resolution if cfg.proxy == "train" else None, metric=args.metric)
    cfg = dataclasses.replace(cfg, metric=summary.metric)
    arch, note = load_task_arch(space, args.arch, ds.num_classes)
    info = sys.stderr if args.json else sys.stdout
    print(summary.line(), file=info, flush=True)
    for line in summary.warnings() + ([note] if note else []):
        print(line, file=sys.stderr, flush=True)
    metrics = evaluate(arch, cfg, progress=_progress_printer(not args.json and sys.stderr.isatty()))
    metrics["data_summary"] = summary.to_dict()
    if args.json:
        print_json(metrics)
        return 0
    from nasconv.budget import format_count

    print(f"{space.name} {arch.arch_hash}: {arch.ops_label()}")
    if cfg.proxy == "train":
        if metrics["diverged"]:
            acc = "diverged at step %s" % metrics["diverged_step"]
        else:
            lo, hi = metrics["accuracy_ci"]
            acc = (f"{metrics['accuracy']:.4f} +- {metrics['accuracy_se']:.4f} (SE; 95% interval [{lo:.4f}, {hi:.4f}] "
                   f"on {metrics['val_images']:,} held-out images)")
        label = "balanced acc." if cfg.metric == "balanced-accuracy" else "accuracy"
        print(f"{label:<13} {acc}  ({cfg.data}, {metrics['steps']} steps in {metrics['precision']}, "
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
