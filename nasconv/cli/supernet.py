"""``nasconv supernet train|status|eval``: the weight-sharing supernet of one-shot screening.

``train`` trains (or resumes) the supernet of a space at the evaluation settings' proxy,
checkpointed beside the study storage (``supernets/`` next to a SQLite file, else
``studies/supernets``; ``$NASCONV_SUPERNET_DIR`` overrides); ``status`` lists the checkpoints
there (steps done, settings) and, with ``--space``, the memory a space's supernet takes;
``eval`` scores one architecture with a trained supernet's weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasconv.cli._common import add_eval_args, eval_config, int_in, nonblank, print_json


def supernet_dir(storage: str) -> Path:
    from nasconv.storage.weights import dir_beside_storage
    from nasconv.supernet.store import SUPERNET_DIR_ENV

    return dir_beside_storage(storage, SUPERNET_DIR_ENV, "supernets")


def add_parser(sub: Any) -> None:
    from nasconv.storage import DEFAULT_STORAGE

    p = sub.add_parser("supernet", help="train or inspect the weight-sharing supernet of one-shot screening")
    cmds = p.add_subparsers(dest="supernet_command", metavar="train|status|eval")
    cmds.required = True
    t = cmds.add_parser("train", help="train (or resume) a space's supernet")
    t.add_argument("--space", required=True, metavar="NAME|PATH")
    t.add_argument("--budget", type=nonblank, default=None, help="sample only architectures within it (MACs, params)")
    t.add_argument("--steps", type=int_in(1, 10**7), default=None, help="single-path steps in all (default 3000)")
    t.add_argument("--time", type=nonblank, default=None, help="stop this session after this long (e.g. 20m); "
                                                              "a later call resumes")
    t.add_argument("--supernet-images", type=int_in(1, 10**8), default=None,
                   help="training images of the supernet (default 40,000)")
    t.add_argument("--restart", action="store_true", help="train again from scratch, replacing the checkpoint")
    t.add_argument("--storage", default=DEFAULT_STORAGE, help="checkpoints go beside it (default %(default)s)")
    add_eval_args(t)
    s = cmds.add_parser("status", help="the supernet checkpoints and, with --space, its memory estimate")
    s.add_argument("--space", default=None, metavar="NAME|PATH")
    s.add_argument("--storage", default=DEFAULT_STORAGE)
    s.add_argument("--json", action="store_true")
    e = cmds.add_parser("eval", help="score one architecture with a trained supernet's weights")
    e.add_argument("--space", required=True, metavar="NAME|PATH")
    e.add_argument("--arch", default="baseline", metavar="FILE.json|baseline")
    e.add_argument("--budget", type=nonblank, default=None)
    e.add_argument("--steps", type=int_in(1, 10**7), default=None)
    e.add_argument("--supernet-images", type=int_in(1, 10**8), default=None)
    e.add_argument("--storage", default=DEFAULT_STORAGE)
    e.add_argument("--json", action="store_true")
    add_eval_args(e)


def _config(args: argparse.Namespace, space: Any) -> Any:
    from nasconv.budget import parse_budget
    from nasconv.supernet.train import DEFAULT_STEPS, DEFAULT_TRAIN_IMAGES, SupernetConfig

    if args.data is None:
        from nasconv.data import choose_default_data

        args.data, _ = choose_default_data(args.data_dir, args.cache_dir)
    args.no_latency = True
    cfg = SupernetConfig(eval=eval_config(args, space), budget=parse_budget(args.budget),
                         steps=args.steps or DEFAULT_STEPS, train_images=args.supernet_images or DEFAULT_TRAIN_IMAGES)
    cfg.check()
    return cfg


def _train(args: argparse.Namespace) -> int:
    from nasconv.spaces import load_space
    from nasconv.supernet.train import step_bar, train_supernet

    space = load_space(args.space)
    cfg = _config(args, space)
    limit = None
    if args.time:
        from nasconv.search.deadline import parse_duration

        limit = parse_duration(args.time)
    with step_bar(cfg.steps, desc=f"{space.name} supernet") as progress:
        out = train_supernet(space, cfg, supernet_dir(args.storage), max_steps=None, time_limit_s=limit,
                             restart=args.restart, progress=progress)
    state = "done" if out.finished else "stopped (run it again to resume)"
    print(f"{space.name} supernet: {out.step}/{out.steps} steps, {state}; loss {out.last_loss:.3f}; "
          f"{out.train_time_s:.0f} s of training; {out.path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from nasconv.supernet.store import list_checkpoints

    folder = supernet_dir(args.storage)
    rows = list_checkpoints(folder)
    memory = None
    if args.space:
        from nasconv.evaluate import eval_config_for
        from nasconv.spaces import load_space
        from nasconv.supernet.memory import available_bytes, estimate_memory
        from nasconv.supernet.model import ProxySettings

        space = load_space(args.space)
        memory = {}
        for device in ("cpu", "cuda"):
            t = eval_config_for(space, device="cpu", latency=False).train
            if device == "cuda":
                from dataclasses import replace

                t = replace(t, **space.proxy_settings_for("cuda"))
            est = estimate_memory(space, ProxySettings.of(t, space.num_classes), batch_size=t.batch_size)
            memory[device] = {**est.to_dict(), "text": est.describe()}
        memory["cpu_available_bytes"] = available_bytes("cpu")
    if args.json:
        print_json({"folder": str(folder), "checkpoints": rows, "memory": memory})
        return 0
    print(f"supernets in {folder}: {len(rows) or 'none'}")
    for r in rows:
        if "error" in r:
            print(f"  {r['path']}: {r['error']}")
            continue
        ident = r["identity"]
        budget = ident["budget"] or "none"
        print(f"  {ident['space']} ({ident['data']['name']}, seed {ident['seed']}, budget {budget}): "
              f"{r['step']}/{r['steps']} steps, {r['train_time_s']:.0f} s, {r['size_bytes'] / 2**20:.0f} MiB  "
              f"{Path(r['path']).parent.name}")
    if memory:
        for device in ("cpu", "cuda"):
            print(f"memory on the {device.upper()} proxy: {memory[device]['text']}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from nasconv.spaces import load_arch, load_space
    from nasconv.supernet.evaluate import TrainedSupernet

    space = load_space(args.space)
    arch = load_arch(space, args.arch)
    cfg = _config(args, space)
    loaded = TrainedSupernet.load(space, cfg, supernet_dir(args.storage))
    m = loaded.evaluate_subnet(arch)
    if args.json:
        print_json(m)
        return 0
    lo, hi = m["accuracy_ci"]
    print(f"{space.name} {arch.arch_hash}: {arch.ops_label()}")
    print(f"accuracy  {m['accuracy']:.4f} [{lo:.4f}, {hi:.4f}] (one-shot: supernet of {m['supernet_steps']} steps, "
          f"{m['val_images']} held-out images, {m['eval_time_s']:.1f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"train": _train, "status": _status, "eval": _eval}[args.supernet_command](args)
