"""``nasconv search``: a multi-objective search over a space; the same command again continues it."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from nasconv.cli._common import (
    BUDGET_HELP,
    MAX_ETA,
    MAX_GPUS_PER_TRIAL,
    MAX_TRIALS,
    MAX_WORKERS,
    add_eval_args,
    eval_config,
    float_in,
    int_in,
    nonblank,
    print_json,
    study_name,
)

#: bounds of the one-shot screening flags
MAX_SCREEN_COUNT = 100_000
MAX_SUPERNET_STEPS = 10**7


def add_parser(sub: Any) -> None:
    from nasconv.search import OBJECTIVES, SAMPLERS
    from nasconv.search.config import SCREENS
    from nasconv.search.fidelity import MAX_REPEATS, MAX_RUNGS
    from nasconv.search.screen import DEFAULT_SCREEN_COUNT
    from nasconv.storage import DEFAULT_STORAGE
    from nasconv.supernet.train import DEFAULT_STEPS

    q = sub.add_parser("search", help="multi-objective search (Optuna) with evaluations on Ray workers",
                       epilog=f"--budget: {BUDGET_HELP}. Running the same command again continues the study.")
    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--budget", type=nonblank, default=None, help="e.g. 4gflops, 20mparams, 15ms (comma-separated)")
    q.add_argument("--trials", type=int_in(1, MAX_TRIALS), default=20,
                   help=f"evaluated candidates in the study, in total (default 20, at most {MAX_TRIALS:,})")
    q.add_argument("--sampler", default=None, help=f"{'|'.join(SAMPLERS)} (default: tpe for a new study; a study "
                   "continues with the sampler it began with unless another is named)")
    q.add_argument("--objectives", default="accuracy,latency",
                   help=f"comma-separated, from {', '.join(OBJECTIVES)} (default accuracy,latency)")
    q.add_argument("--storage", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL (default {DEFAULT_STORAGE}); "
                   "postgresql+psycopg://user@host/db for clusters")
    q.add_argument("--study", type=study_name, default=None, help="study name (default <space>-<budget>)")
    q.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=1,
                   help=f"concurrent evaluations (default 1, at most {MAX_WORKERS})")
    q.add_argument("--cpus-per-worker", type=int_in(1, MAX_WORKERS), default=None,
                   help=f"default: this machine's cores / workers (at most {MAX_WORKERS})")
    q.add_argument("--address", default=None, help="HOST:PORT of a Ray cluster started with `ray start --head`")
    q.add_argument("--gpus-per-trial", type=float_in(0, MAX_GPUS_PER_TRIAL), default=0.0,
                   help=f"GPUs per evaluation, in [0, {MAX_GPUS_PER_TRIAL:g}] (fractional allowed); latency is then "
                   "measured on that GPU")
    q.add_argument("--no-baseline", action="store_true", help="do not evaluate the all-standard baseline")
    q.add_argument("--inline", action="store_true", help="evaluate in this process instead of on Ray")
    q.add_argument("--keep-weights", action="store_true", help="keep each trained candidate's weights for "
                   "`nasconv export --weights` (needs --full-proxy: the proxy must train the architecture itself)")
    q.add_argument("--rungs", type=int_in(1, MAX_RUNGS), default=1,
                   help="multi-fidelity: rung r trains on eta^r x --train-images images, the top rung validates on "
                   "the whole held-out split; promising candidates are promoted "
                   f"asynchronously (ASHA) (default 1: flat search; at most {MAX_RUNGS})")
    q.add_argument("--eta", type=float_in(1, MAX_ETA, low_open=True), default=3.0,
                   help=f"each rung promotes its top 1/eta and trains eta times longer (default 3; in (1, "
                   f"{MAX_ETA:g}])")
    q.add_argument("--repeats", type=int_in(0, MAX_REPEATS), default=0,
                   help="evaluate the final front's members again with this many further seeds (latency "
                   f"re-measured), so that the front stands on repeated measurements (at most {MAX_REPEATS})")
    q.add_argument("--latency", default="measure", choices=("measure", "predict", "predict+remeasure"),
                   help="latency objective: measure (default: every trained candidate is timed), predict (from the "
                   "device's table, `nasconv latency profile`; only candidates near a latency budget are timed), "
                   "predict+remeasure (also times the final front). With a table, a latency budget is checked "
                   "on the prediction before anything is trained, in every mode")
    q.add_argument("--time", default=None, metavar="DURATION", help="wall-clock budget of this run, e.g. 10m, 2h, "
                   "1h30m: after it no new candidate or promotion starts; what runs may finish within a grace "
                   "period (the larger of 60 s and 10%% of the budget), else it is failed and queued again as "
                   "Ctrl-C does. With --trials, whichever comes first; the same command continues the study")
    q.add_argument("--screen", default=None, choices=SCREENS,
                   help="oneshot: before stand-alone training, score --screen-count candidates with a weight-sharing "
                   "supernet (trained once per space, data and settings, checkpointed beside the storage, reused "
                   "by later studies) and train the best by non-dominated rank stand-alone; the front stands on "
                   "stand-alone evaluations only. Needs the training proxy and a nasconv backbone space; a latency "
                   "budget needs the device's latency table (`nasconv latency profile`), a latency objective "
                   "without one is screened on MACs (said in a note)")
    q.add_argument("--screen-count", type=int_in(1, MAX_SCREEN_COUNT), default=None,
                   help=f"candidates scored by the supernet (default {DEFAULT_SCREEN_COUNT}: a one-shot score costs "
                   "about a tenth of a brief training, 6.5 vs 67 CPU-s on Fashion-MNIST resnet20, so 100 cost about "
                   f"ten trainings; at most {MAX_SCREEN_COUNT:,}); a larger count continues a study's screening")
    q.add_argument("--supernet-steps", type=int_in(1, MAX_SUPERNET_STEPS), default=None,
                   help=f"single-path training steps of the supernet (default {DEFAULT_STEPS}; at most "
                   f"{MAX_SUPERNET_STEPS:,}); other steps are another supernet")
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
    if stored:  # the proxy length, metric and held-out split a study was made with (nasconv.search.task)
        for key in ("epochs", "val_images"):
            if getattr(args, key) is None and (stored.get("train") or {}).get(key) is not None:
                setattr(args, key, stored["train"][key])
        if args.metric is None:
            args.metric = stored.get("metric", "accuracy")  # stored before --metric: accuracy
        if args.holdout is None:
            args.holdout = stored.get("holdout")
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
    from nasconv.search import SearchConfig, SearchDriver
    from nasconv.search.deadline import parse_duration
    from nasconv.search.screen import DEFAULT_SCREEN_COUNT
    from nasconv.spaces import load_space

    if args.screen is None and (args.screen_count is not None or args.supernet_steps is not None):
        from nasconv.errors import UsageError

        raise UsageError("--screen-count and --supernet-steps need --screen oneshot")
    time_s = parse_duration(args.time) if args.time is not None else None  # a bad --time: before anything
    space = load_space(args.space)
    data_choice = _choose_data(args, space)
    cfg = SearchConfig(
        space=args.space, budget=args.budget, trials=args.trials, sampler=args.sampler,
        objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip()), seed=args.seed,
        storage=args.storage, study_name=args.study, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
        address=args.address, gpus_per_trial=args.gpus_per_trial, eval=eval_config(args, space),
        evaluate_baseline=not args.no_baseline, runner="inline" if args.inline else "ray",
        progress=not args.json, keep_weights=args.keep_weights, rungs=args.rungs, eta=args.eta,
        repeats=args.repeats, data_choice=data_choice, latency=args.latency, time_s=time_s,
        choose_metric=args.metric is None, size_proxy=args.train_images is None and args.epochs is None,
        screen=args.screen, screen_count=args.screen_count or DEFAULT_SCREEN_COUNT,
        supernet_steps=args.supernet_steps,
    )
    if data_choice and not args.json:
        if not cfg.address and not cfg.gpus_per_trial:
            from nasconv.profile import resolve_device

            resolve_device(cfg.eval.device)  # a bad device is the one line, not after the data line
        print(f"data: {args.data} ({data_choice}; --data cifar10:DIR names a copy)", flush=True)
    driver = SearchDriver(cfg)  # reads the data and fixes the settings that follow it: then the plan
    if not args.json:
        _say_plan(driver.cfg, driver.space)
    res = driver.run()
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
    if res.stopped_on_time:
        from nasconv.search.deadline import format_duration

        requeued = (f"; {res.requeued} evaluation(s) still running after the grace period failed and queued "
                    "again") if res.requeued else ""
        print(f"stopped on time: the --time budget ({format_duration(res.time_s or 0)}) ran out with "
              f"{res.evaluated} of {args.trials} evaluated{requeued}; the same command continues the study")
    if res.screen:
        sc = res.screen
        steps = f"{sc.get('supernet_step', '?')}/{sc.get('supernet_steps')} steps"
        stop = "; stopped on time before the screen was whole (the same command continues it)" \
            if sc["stopped_on_time"] else ""
        print(f"one-shot screening: {sc['screened']} of {sc['count']} candidates scored in study {sc['study']} "
              f"({sc['scored']} by the supernet now, {sc['cached']} from the cache; supernet {steps}); "
              f"{sc['promoted']} queued for stand-alone training{stop}")
    if res.remeasured:
        print(f"latency: {res.remeasured} front member(s) re-measured on this device; {res.remeasured_over_budget} "
              "measured over the budget and left off the front")
    print(f"Pareto front ({len(res.front)} architectures, hypervolume {res.hypervolume:.4g}):")
    print(front_table(res.front, res.baseline))
    if res.noise:
        print(f"noise: {noise_line(res.noise)}")
    from nasconv.results.trust import trust_line_of  # one-shot screening: how far to trust it

    if trust := trust_line_of(res.storage, res.study_name):
        print(trust)
    print(f"next: nasconv report --study {res.study_name} --out report.html   |   "
          f"nasconv dashboard --study {res.study_name} --storage {res.storage}")
    return 0


def _say_plan(cfg: Any, space: Any) -> None:
    """The start line: what the search will do and roughly how long it takes here (measured)."""
    from nasconv.budget import parse_budget
    from nasconv.search import default_study_name
    from nasconv.search.estimate import plan_search, stored_progress

    done, baseline_done = stored_progress(cfg.storage, cfg.study_name or default_study_name(
        space, parse_budget(cfg.budget)))
    print(plan_search(cfg, space, done=done, baseline_done=baseline_done).line(), flush=True)
    # (a failed measurement ends the command before the search starts, in its one line)
