"""The ``nasconv`` command. Each subcommand is a small function over the library API.

Errors a user can cause end in one line on stderr and a non-zero exit: 2 for usage errors
(unknown names, malformed values), 1 for the rest, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
from pathlib import Path
from typing import Any, Sequence

from nasconv import __version__
from nasconv.errors import NasconvError, UsageError
from nasconv.spaces import load_arch

BUDGET_HELP = ("cost limits, comma-separated: 4gflops, 800mflops, 4gmacs, 20mparams, 15ms. "
               "1 FLOP = 1 multiply-add (the papers' convention: ResNet-50 = 4.1 GFLOPs), "
               "so 4gflops = 4gmacs = 4e9 MACs per image")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the whole usage)
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


# --- ops --------------------------------------------------------------------------------------


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4 or min(parts) < 1:
        raise UsageError(f"--shape must be C_IN,C_OUT,H,W (four positive integers), got {text!r}")
    return parts  # type: ignore[return-value]


def cmd_ops(args: argparse.Namespace) -> int:
    from nasconv.budget import format_count
    from nasconv.ops import get_op, list_ops, op_cost

    c_in, c_out, h, w = _shape(args.shape)
    ref = op_cost("standard", c_in, c_out, args.kernel, h, w, args.stride)
    rows = []
    for name in list_ops():
        spec = get_op(name)
        hyper = {k: v.default for k, v in spec.hyper.items()}
        entry: dict[str, Any] = {"name": name, "summary": spec.summary, "paper": spec.paper,
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
        _print_json({"shape": {"in_channels": c_in, "out_channels": c_out, "height": h, "width": w,
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


# --- spaces, cost, sample -------------------------------------------------------------------


def cmd_space_list(args: argparse.Namespace) -> int:
    from nasconv.spaces import list_spaces, load_space

    rows = []
    for name in list_spaces():
        s = load_space(name).summary()
        rows.append({k: s[k] for k in ("name", "description", "resolution", "architectures", "min_macs", "max_macs",
                                       "min_params", "max_params")} | {"baseline": s["baseline"]})
    if args.json:
        _print_json(rows)
        return 0
    from nasconv._table import render_table
    from nasconv.budget import format_count

    print(render_table(["space", "input", "architectures", "MACs (min..max)", "params (min..max)", "description"],
                       [[r["name"], f"{r['resolution']}px", f"{r['architectures']:,}",
                         f"{format_count(r['min_macs'])}..{format_count(r['max_macs'])}",
                         f"{format_count(r['min_params'])}..{format_count(r['max_params'])}", r["description"]]
                        for r in rows], align="lrrrrl"))
    return 0


def cmd_space_show(args: argparse.Namespace) -> int:
    from nasconv.spaces import load_space

    s = load_space(args.space).summary()
    if args.json:
        _print_json(s)
        return 0
    from nasconv._table import render_table

    print(f"{s['name']}: {s['description']}")
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


def cmd_cost(args: argparse.Namespace) -> int:
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
        _print_json(out)
        return 0
    from nasconv._table import render_table

    print(f"{space.name} {arch.arch_hash}: {arch.ops_label()}  @ {out['resolution']}px")
    rows = [[p["name"], f"{p['params']:,}", f"{p['macs']:,}"] for p in out["parts"]]
    rows.append(["total", f"{cost.params:,}", f"{cost.macs:,}"])
    if args.measure:
        rows.append(["measured", f"{out['measured']['params']:,}", f"{out['measured']['macs']:,}"])
    print(render_table(["part", "params", "MACs"], rows))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from nasconv.budget import check_feasible, parse_budget
    from nasconv.cost import estimate_cost
    from nasconv.errors import BudgetError
    from nasconv.spaces import load_space

    space = load_space(args.space)
    budget = parse_budget(args.budget)
    check_feasible(budget, space.cost_bounds(), space.name)
    rng = random.Random(args.seed)
    for _ in range(args.tries):
        arch = space.sample(rng)
        cost = estimate_cost(arch)
        if not budget.violations(macs=cost.macs, params=cost.params):
            break
    else:
        raise BudgetError(f"no architecture within {budget.text} among {args.tries} random samples of {space.name}; "
                          "raise the budget or --tries")
    if args.json:
        _print_json({"arch": arch.to_dict(), "arch_hash": arch.arch_hash, "params": cost.params, "macs": cost.macs})
    else:
        print(arch.to_json(indent=2))
    return 0


# --- evaluate -------------------------------------------------------------------------------


def add_eval_args(q: argparse.ArgumentParser) -> None:
    """Evaluation settings shared by ``evaluate`` and ``search``."""
    from nasconv.evaluate import PROXIES

    g = q.add_argument_group("evaluation")
    g.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (default), cifar10:DIR, imagefolder:DIR, synthetic (smoke tests only)")
    g.add_argument("--data-dir", default=None, help="where to look for fashion-mnist first (then $NASCONV_DATA, "
                                                   "then Debian's dataset-fashion-mnist)")
    g.add_argument("--proxy", default="train", help=f"accuracy objective: {', '.join(PROXIES)} (default: train)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (latency is measured there)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--train-images", type=int, default=None, help="training images of the proxy (default 8000)")
    g.add_argument("--epochs", type=int, default=None, help="proxy training epochs (default 1)")
    g.add_argument("--batch-size", type=int, default=None, help="proxy training batch size (default 64)")
    g.add_argument("--resolution", type=int, default=None, help="proxy training resolution (default 28)")
    g.add_argument("--optimizer", default=None, help="adamw (default) or sgd")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate")
    g.add_argument("--full-proxy", action="store_true",
                   help="train the full candidate, not the reduced copy (1 block per stage, half width)")
    g.add_argument("--latency-batch", type=int, default=1, help="batch size of the latency measurement")
    g.add_argument("--latency-threads", type=int, default=None,
                   help="torch threads for the latency measurement alone (default: the worker's); 1 is the "
                        "repeatable choice on a CPU shared with other work")
    g.add_argument("--no-latency", action="store_true", help="skip the latency measurement")


def eval_config_from_args(args: argparse.Namespace, space: Any):
    from nasconv.evaluate import EvalConfig, with_train_overrides

    cfg = EvalConfig(data=args.data, data_dir=args.data_dir, proxy=args.proxy, device=args.device,
                     latency=not args.no_latency, latency_batch=args.latency_batch,
                     latency_threads=args.latency_threads)
    extra = dict(space.proxy_settings)
    if args.full_proxy:
        extra = {"max_depth": None, "width_factor": 1.0, "small_stem": False}
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **extra))  # None is a value here
    cfg = with_train_overrides(cfg, train_images=args.train_images, epochs=args.epochs, batch_size=args.batch_size,
                               resolution=args.resolution, optimizer=args.optimizer, lr=args.lr, seed=args.seed)
    cfg.check()
    return cfg


def _progress_printer(enabled: bool):
    if not enabled:
        return None

    def show(step: int, total: int, loss: float) -> None:
        if step == total or step % 5 == 0:
            bar = "#" * int(30 * step / total)
            sys.stderr.write(f"\rtraining [{bar:<30}] {step}/{total} steps  loss {loss:.3f}")
            if step == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
    return show


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nasconv.evaluate import evaluate
    from nasconv.profile import resolve_device
    from nasconv.spaces import load_space

    space = load_space(args.space)
    arch = load_arch(space, args.arch)
    cfg = eval_config_from_args(args, space)
    resolve_device(cfg.device)  # fail before loading data
    metrics = evaluate(arch, cfg, progress=_progress_printer(not args.json and sys.stderr.isatty()))
    if args.json:
        _print_json(metrics)
        return 0
    from nasconv.budget import format_count

    print(f"{space.name} {arch.arch_hash}: {arch.ops_label()}")
    if cfg.proxy == "train":
        acc = "diverged at step %s" % metrics["diverged_step"] if metrics["diverged"] else f"{metrics['accuracy']:.4f}"
        print(f"accuracy      {acc}  ({cfg.data}, {metrics['steps']} steps, {metrics['train_time_s']:.1f} s)")
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


# --- search, pareto, dashboard --------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    from nasconv.results import front_table
    from nasconv.search import SearchConfig, run_search
    from nasconv.spaces import load_space

    space = load_space(args.space)
    cfg = SearchConfig(
        space=args.space, budget=args.budget, trials=args.trials, sampler=args.sampler,
        objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip()), seed=args.seed,
        storage=args.storage, study_name=args.study, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
        address=args.address, gpus_per_trial=args.gpus_per_trial, eval=eval_config_from_args(args, space),
        evaluate_baseline=not args.no_baseline, runner="inline" if args.inline else "ray",
        progress=not args.json, keep_weights=args.keep_weights,
    )
    if cfg.gpus_per_trial and cfg.eval.device == "cpu":
        cfg.eval = dataclasses.replace(cfg.eval, device="cuda")
    res = run_search(cfg)
    if args.json:
        _print_json(dataclasses.asdict(res))
        return 0
    print(f"study {res.study_name} in {res.storage}: {res.evaluated} evaluated, {res.failed} failed, "
          f"{res.rejected} rejected (over budget), {res.cached} reused from the cache")
    print(f"Pareto front ({len(res.front)} architectures, hypervolume {res.hypervolume:.4g}):")
    print(front_table(res.front, res.baseline))
    print(f"next: nasconv pareto --study {res.study_name} --plot front.png   |   "
          f"nasconv dashboard --storage {res.storage}")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from nasconv.results import front_table, load_study, plot_front, study_summary

    study, tables = load_study(args.study, args.storage)
    summary = study_summary(study, tables)
    if args.plot:
        plot_front(study, args.plot)
    if args.json:
        _print_json(summary)
        return 0
    print(f"study {summary['study']}: space {summary['space']}, budget {summary['budget']}, objectives "
          f"{','.join(summary['objectives'] or [])}; {summary['evaluated']} evaluated, {summary['failed']} failed, "
          f"{summary['rejected']} rejected, {summary['running']} running")
    print(f"Pareto front ({len(summary['front'])} architectures, hypervolume {summary['hypervolume']:.4g}):")
    print(front_table(summary["front"], summary["baseline"]))
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from nasconv.storage import open_storage, safe_url

    storage, tables = open_storage(args.storage, heartbeat=False)
    tables.dispose()
    try:
        import optuna_dashboard
    except ImportError:
        raise NasconvError("optuna-dashboard is not installed; pip install optuna-dashboard") from None
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {safe_url(args.storage)} (Ctrl-C stops)",
          file=sys.stderr)
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except OSError as exc:
        raise NasconvError(f"cannot serve on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


# --- export -----------------------------------------------------------------------------


def add_export_parser(sub: Any) -> None:
    """Register ``nasconv export`` on the CLI's subparsers."""
    from nasconv.export import BEST_METRICS
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser(
        "export", help="write architectures as standalone PyTorch files (+ metadata, weights, TorchScript, ONNX)",
        description="Export from a study (--study with --trial N, --pareto or --best METRIC) or one architecture "
                    "of a space (--space with --arch). Per architecture DIR gets <name>.py (torch only: the "
                    "operators, the network and build()), <name>.json (spec, metrics, provenance, evaluation "
                    "settings) and, when asked, <name>.pt, <name>.torchscript.pt, <name>.onnx.",
        epilog="Load one back with: python -c \"from nasconv.export import load; model = load('DIR/<name>')\"")
    q.add_argument("--study", default=None, help="study to export from")
    q.add_argument("--storage", default=None, help=f"SQLAlchemy URL of the study (default {DEFAULT_STORAGE})")
    sel = q.add_mutually_exclusive_group()
    sel.add_argument("--trial", type=int, default=None, metavar="N", help="one trial, by number")
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
    q.add_argument("--force", action="store_true", help="overwrite existing files of the same names")
    q.add_argument("--json", action="store_true", help="list what was written as JSON")
    q.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
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
        print(json.dumps([{"name": n, "folder": str(Path(args.out)), "files": sorted(fs)}
                          for n, fs in by_name.items()], indent=2))
        return 0
    for n, fs in by_name.items():
        meta = json.loads((Path(args.out) / f"{n}.json").read_text())
        inf = meta["inference"]
        print(f"{n}: {meta['ops']}  ({inf['params']:,} params, {inf['macs']:,} MACs at {inf['resolution']}px)")
        print(f"  wrote {', '.join(sorted(fs))} in {args.out}")
    first = next(iter(by_name))
    print(f"next: python -c \"from nasconv.export import load; model = load('{Path(args.out) / first}')\"")
    return 0


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nasconv", description="Neural architecture search over efficient convolution operators.",
                epilog=f"Budgets: {BUDGET_HELP}.")
    p.add_argument("--version", action="version", version=f"nasconv {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    q = sub.add_parser("ops", help="list operators with their cost at one shape")
    q.add_argument("--shape", default="256,256,14,14", help="C_IN,C_OUT,H,W (default: ResNet-50 stage 3)")
    q.add_argument("--kernel", type=int, default=3)
    q.add_argument("--stride", type=int, default=1, choices=(1, 2))
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_ops)

    q = sub.add_parser("space", help="list or show search spaces")
    ssub = q.add_subparsers(dest="space_command", metavar="{list,show}", parser_class=_Parser)
    ssub.required = True
    r = ssub.add_parser("list", help="the shipped spaces")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_space_list)
    r = ssub.add_parser("show", help="stages, choices, size and cost range of one space")
    r.add_argument("space", metavar="NAME|PATH")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_space_show)

    q = sub.add_parser("cost", help="exact params and MACs of an architecture, per stage")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--arch", default="baseline", metavar="FILE.json|baseline")
    q.add_argument("--resolution", type=int, default=None, help="input size (default: the space's)")
    q.add_argument("--measure", action="store_true", help="also build the model and measure with FlopCounterMode")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_cost)

    q = sub.add_parser("sample", help="a random architecture of a space as JSON", epilog=f"--budget: {BUDGET_HELP}.")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--seed", type=int, default=None)
    q.add_argument("--budget", default=None, help="only architectures within this budget")
    q.add_argument("--tries", type=int, default=10000, help=argparse.SUPPRESS)
    q.add_argument("--json", action="store_true", help="arch, hash and cost as one object")
    q.set_defaults(func=cmd_sample)

    q = sub.add_parser("evaluate", help="briefly train (or score) one architecture and measure its latency")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--arch", default="baseline", metavar="FILE.json|baseline")
    q.add_argument("--json", action="store_true", help="metrics as JSON (no progress output)")
    add_eval_args(q)
    q.set_defaults(func=cmd_evaluate)

    from nasconv.search import OBJECTIVES, SAMPLERS
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("search", help="multi-objective search (Optuna) with evaluations on Ray workers",
                       epilog=f"--budget: {BUDGET_HELP}. Running the same command again continues the study.")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--budget", default=None, help="e.g. 4gflops, 20mparams, 15ms (comma-separated)")
    q.add_argument("--trials", type=int, default=20, help="evaluated candidates in the study, in total (default 20)")
    q.add_argument("--sampler", default="nsga2", help=f"{'|'.join(SAMPLERS)} (default nsga2)")
    q.add_argument("--objectives", default="accuracy,latency",
                   help=f"comma-separated, from {', '.join(OBJECTIVES)} (default accuracy,latency)")
    q.add_argument("--storage", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL (default {DEFAULT_STORAGE}); "
                   "postgresql+psycopg://user@host/db for clusters")
    q.add_argument("--study", default=None, help="study name (default <space>-<budget>)")
    q.add_argument("--workers", type=int, default=1, help="concurrent evaluations (default 1)")
    q.add_argument("--cpus-per-worker", type=int, default=None, help="default: this machine's cores / workers")
    q.add_argument("--address", default=None, help="HOST:PORT of a Ray cluster started with `ray start --head`")
    q.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per evaluation (fractional allowed); "
                   "latency is then measured on that GPU")
    q.add_argument("--no-baseline", action="store_true", help="do not evaluate the all-standard baseline")
    q.add_argument("--inline", action="store_true", help="evaluate in this process instead of on Ray")
    q.add_argument("--keep-weights", action="store_true", help="keep each trained candidate's weights for "
                   "`nasconv export --weights` (needs --full-proxy: the proxy must train the architecture itself)")
    q.add_argument("--json", action="store_true", help="the result as JSON (no progress output)")
    add_eval_args(q)
    q.set_defaults(func=cmd_search)

    q = sub.add_parser("pareto", help="the Pareto front of a study: table, JSON, plot")
    q.add_argument("--study", required=True)
    q.add_argument("--storage", default=DEFAULT_STORAGE)
    q.add_argument("--plot", default=None, metavar="FILE.png", help="also write a plot (baseline marked)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_pareto)

    q = sub.add_parser("dashboard", help="optuna-dashboard on the study database")
    q.add_argument("--storage", default=DEFAULT_STORAGE)
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--port", type=int, default=8080)
    q.set_defaults(func=cmd_dashboard)
    add_export_parser(sub)
    return p


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--budget -1gflops`` -> ``--budget=-1gflops``, so the value is validated (and refused
    with the accepted forms) instead of argparse taking it for an unknown option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--budget", "--trials", "--workers", "--seed", "--epochs", "--lr") \
                and len(arg) > 1 and arg[0] == "-" and (arg[1].isdigit() or arg[1] == "."):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
        return int(args.func(args) or 0)
    except NasconvError as exc:
        print(f"nasconv: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nasconv: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # never a traceback for users; NASCONV_DEBUG=1 shows it
        if os.environ.get("NASCONV_DEBUG"):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"nasconv: internal error: {type(exc).__name__}: {msg} (NASCONV_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
