"""``nasconv search``: a multi-objective search over a space; the same command again continues it."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from nasconv.cli._common import BUDGET_HELP, add_eval_args, eval_config, print_json


def add_parser(sub: Any) -> None:
    from nasconv.search import OBJECTIVES, SAMPLERS
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("search", help="multi-objective search (Optuna) with evaluations on Ray workers",
                       epilog=f"--budget: {BUDGET_HELP}. Running the same command again continues the study.")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--budget", default=None, help="e.g. 4gflops, 20mparams, 15ms (comma-separated)")
    q.add_argument("--trials", type=int, default=20, help="evaluated candidates in the study, in total (default 20)")
    q.add_argument("--sampler", default=None, help=f"{'|'.join(SAMPLERS)} (default: tpe for a new study; a study "
                   "continues with the sampler it began with unless another is named)")
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
    q.add_argument("--rungs", type=int, default=1, help="multi-fidelity: rung r trains on eta^r x --train-images "
                   "images, the top rung validates on the whole held-out split; promising candidates are promoted "
                   "asynchronously (ASHA) (default 1: flat search)")
    q.add_argument("--eta", type=float, default=3.0, help="each rung promotes its top 1/eta and trains eta times "
                   "longer (default 3)")
    q.add_argument("--repeats", type=int, default=0, help="evaluate the final front's members again with this many "
                   "further seeds (latency re-measured), so that the front stands on repeated measurements")
    q.add_argument("--latency", default="measure", choices=("measure", "predict", "predict+remeasure"),
                   help="latency objective: measure (default: every trained candidate is timed), predict (from the "
                   "device's table, `nasconv latency profile`; only candidates near a latency budget are timed), "
                   "predict+remeasure (also times the final front). With a table, a latency budget is checked "
                   "on the prediction before anything is trained, in every mode")
    q.add_argument("--json", action="store_true", help="the result as JSON (no progress output)")
    add_eval_args(q)


def _choose_data(args: argparse.Namespace, space: Any) -> str | None:
    """Settings the user did not name: a stored study keeps the data, device, precision and
    training images it began with (so that it resumes wherever it is continued); a new one trains
    on CIFAR-10 where it is found or can be downloaded, else on Fashion-MNIST. Returns why the data was chosen
    (said on stdout once the settings are checked, and stamped on a new study), None when
    ``--data`` named it."""
    from nasconv.budget import parse_budget
    from nasconv.errors import NasconvError
    from nasconv.search import default_study_name
    from nasconv.storage import open_study

    name = args.study or default_study_name(space, parse_budget(args.budget))
    try:
        study, tables = open_study(name, args.storage, readonly=True)
    except NasconvError:
        stored: dict[str, Any] = {}
    else:
        tables.dispose()
        stored = study.user_attrs.get("eval_config") or {}
    if args.device is None and stored.get("device") and not args.gpus_per_trial:
        args.device = stored["device"]
    if args.precision is None and stored:
        args.precision = (stored.get("train") or {}).get("precision", "fp32")  # stored before bf16: fp32
    if args.train_images is None and (stored.get("train") or {}).get("train_images"):
        args.train_images = stored["train"]["train_images"]  # (a default that changed since keeps its study)
    if args.data is not None:
        return None
    if stored.get("data"):
        args.data, why = stored["data"], f"the data study {name!r} began with"
    else:
        from nasconv.data import choose_default_data

        args.data, why = choose_default_data(args.data_dir, args.cache_dir)
    return why


def run(args: argparse.Namespace) -> int:
    from nasconv.results import front_table, noise_line
    from nasconv.search import SearchConfig, run_search
    from nasconv.spaces import load_space

    space = load_space(args.space)
    data_choice = _choose_data(args, space)
    cfg = SearchConfig(
        space=args.space, budget=args.budget, trials=args.trials, sampler=args.sampler,
        objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip()), seed=args.seed,
        storage=args.storage, study_name=args.study, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
        address=args.address, gpus_per_trial=args.gpus_per_trial, eval=eval_config(args, space),
        evaluate_baseline=not args.no_baseline, runner="inline" if args.inline else "ray",
        progress=not args.json, keep_weights=args.keep_weights, rungs=args.rungs, eta=args.eta,
        repeats=args.repeats, data_choice=data_choice, latency=args.latency,
    )
    if data_choice and not args.json:
        if not cfg.address and not cfg.gpus_per_trial:
            from nasconv.profile import resolve_device

            resolve_device(cfg.eval.device)  # a bad device is the one line, not after the data line
        print(f"data: {args.data} ({data_choice}; --data cifar10:DIR names a copy)", flush=True)
    res = run_search(cfg)
    if args.json:
        print_json(dataclasses.asdict(res))
        return 0
    print(f"study {res.study_name} in {res.storage}: {res.evaluated} evaluated, {res.failed} failed, "
          f"{res.rejected} rejected (over budget), {res.cached} reused from the cache")
    if res.rungs > 1 or res.per_rung:
        reached = ", ".join(f"rung {r}: {n}" for r, n in sorted(res.per_rung.items()))
        print(f"multi-fidelity: {res.promoted} promotion(s) or repeat(s) run by this search; candidates by the highest "
              f"rung reached: {reached}; the front stands at rung {res.rung} of {res.rungs - 1} (lower rungs: "
              "not promoted, not on it)")
    if res.remeasured:
        print(f"latency: {res.remeasured} front member(s) re-measured on this device; {res.remeasured_over_budget} "
              "measured over the budget and left off the front")
    print(f"Pareto front ({len(res.front)} architectures, hypervolume {res.hypervolume:.4g}):")
    print(front_table(res.front, res.baseline))
    if res.noise:
        print(f"noise: {noise_line(res.noise)}")
    print(f"next: nasconv report --study {res.study_name} --out report.html   |   "
          f"nasconv dashboard --study {res.study_name} --storage {res.storage}")
    return 0
