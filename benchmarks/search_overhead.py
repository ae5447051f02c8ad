"""Orchestration overhead per trial: Optuna + Ray + storage around a trivial evaluator.

    python benchmarks/search_overhead.py [--trials 60] [--repeats 3] [--default-trial-s S] [--out DIR]

A trivial evaluator (``trivial_evaluate``: no model, no data; the metrics a real evaluation
returns, with the exact MACs and params of the architecture and a made-up score and latency)
makes every trial's time orchestration only. ``resnet50`` at ``4gflops``, nsga2 (nasconv's
default), ``--trials`` evaluated trials per run, four variants per repeat, interleaved so that
machine load hits them alike:

- ``ray``: ``run_search`` with a ``RayRunner`` (local Ray, 1 worker x 2 CPUs), SQLite storage;
- ``inline``: ``run_search`` with the ``InlineRunner``, SQLite storage;
- ``plain-memory``: a plain Optuna ask/tell loop (``suggest_arch``, ``estimate_cost``, the
  budget as ``trial.set_constraint``, the evaluator called directly), in-memory storage;
- ``plain-sqlite``: the same loop on a SQLite ``RDBStorage``.

Each run gets a fresh SQLite file (so the evaluation cache is empty). Not timed: Ray startup
(measured separately: ``ray.init`` and the first task round trip, which starts the worker) and
the one-off study creation (``SearchDriver(...)``, likewise). Timed: from the first trial's
``datetime_start`` (ask) to the last trial's ``datetime_complete`` (tell), as Optuna stored them;
the evaluator's own wall time (``worker_wall_s`` that ``run_job`` records, or a timer around the
direct call) is subtracted. Overhead per evaluated trial = that / evaluated trials; per Optuna
trial = that / all trials (over-budget rejections are trials too, never evaluated). Per-trial
medians come from the gaps between consecutive asks (minus that trial's evaluator time).

A default trial's cost is one real default ``evaluate`` (brief training on Fashion-MNIST, latency
at 224 px) of a random within-budget resnet50 architecture, measured once (or ``--default-trial-s``).

Writes ``search_overhead.md`` and ``search_overhead.json`` to ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Before torch loads its OpenMP runtime: threads that spin while they wait for work make a
# multi-threaded forward pass 10-50x slower when other processes share the cores (measured on
# this machine: 1.3-2.8 s instead of ~70 ms for a resnet50 variant at 112 px, 2 threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import optuna
import sqlalchemy as sa
import torch
from _common import cpu_model, git_revision
from _common import load_avg as _load_avg

from nasconv._version import __version__
from nasconv.arch import ArchSpec
from nasconv.budget import parse_budget
from nasconv.cost import estimate_cost
from nasconv.evaluate import EvalConfig, EvaluationJob, evaluate
from nasconv.search import SearchConfig, SearchDriver, make_sampler, suggest_arch
from nasconv.spaces import load_space
from nasconv.train import TrainConfig

SPACE = "resnet50"
BUDGET = "4gflops"
SAMPLER = "nsga2"
OBJECTIVES = ("accuracy", "latency")
VARIANTS = ("ray", "inline", "inline-tmpfs", "plain-memory", "plain-sqlite")
TMPFS = Path("/dev/shm")
GOAL_MS = 50.0
#: evaluation settings of the searches (only their cache key matters to the trivial evaluator)
EVAL = EvalConfig(proxy="synflow", train=TrainConfig(resolution=32), zc_batch=32, latency_max_time_s=3.0)
#: database commits (transactions) of every SQLAlchemy engine in this process
COMMITS = [0]


@sa.event.listens_for(sa.engine.Engine, "commit")
def _count_commit(conn: Any) -> None:
    COMMITS[0] += 1


def trivial_evaluate(arch: ArchSpec, config: EvalConfig) -> dict[str, Any]:
    """What ``evaluate`` returns, instantly: the same keys (so the driver stores as many trial
    attributes as in a real search), exact MACs and params, a score and a latency made up from them."""
    cost = estimate_cost(arch)
    h = int(arch.arch_hash[:8], 16) / 0xFFFFFFFF  # a stable pseudo-random number per architecture
    latency = cost.macs / 4e7 * (0.8 + 0.4 * h)
    return {
        "arch_hash": arch.arch_hash, "space": arch.space, "proxy": config.proxy, "data": config.data,
        "params": cost.params, "macs": cost.macs, "settings_key": config.settings_key(),
        "nasconv_version": __version__, "torch_version": torch.__version__, "hostname": platform.node(),
        "accuracy": None, "score": 18.0 + cost.params / 1e7 + h, "diverged": False, "diverged_step": None,
        "train_time_s": 0.0, "steps": 0, "latency_ms": latency, "latency_iqr_ms": 0.01 * latency,
        "latency_rel_iqr": 0.01, "latency_repeats": 10, "latency_capped": False, "latency_batch": 1,
        "latency_resolution": arch.resolution, "device": "cpu", "device_name": "trivial", "threads": 2,
        "eval_time_s": 0.0,
    }


# --- the runs -----------------------------------------------------------------------------


def _search_cfg(storage: str, name: str, trials: int, seed: int, runner: str) -> SearchConfig:
    return SearchConfig(space=SPACE, budget=BUDGET, trials=trials, sampler=SAMPLER, objectives=OBJECTIVES, seed=seed,
                        storage=storage, study_name=name, eval=EVAL, runner=runner, workers=1, cpus_per_worker=2,
                        evaluate_baseline=False, progress=False)


def _eval_walls(storage: str) -> dict[str, float]:
    """arch hash -> evaluator wall time, from the metrics ``run_job`` stored in the evaluation cache."""
    engine = sa.create_engine(storage)
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT arch_hash, metrics_json FROM nasconv_eval_cache")).all()
    engine.dispose()
    return {h: json.loads(m)["worker_wall_s"] for h, m in rows}


def run_driver(variant: str, runner: Any, folder: Path, trials: int, seed: int) -> dict[str, Any]:
    """``run_search``'s driver; ``inline-tmpfs``: the SQLite file is in RAM."""
    db = folder / f"{variant}-{seed}.db"
    storage = f"sqlite:///{db}"
    name = f"overhead-{variant}-{seed}"
    t0 = time.perf_counter()
    driver = SearchDriver(_search_cfg(storage, name, trials, seed, "ray" if variant == "ray" else "inline"),
                          evaluator=trivial_evaluate, runner=runner)
    setup_s = time.perf_counter() - t0
    commits0 = COMMITS[0]
    t0 = time.perf_counter()
    res = driver.run()
    run_s = time.perf_counter() - t0
    commits = COMMITS[0] - commits0
    study = optuna.load_study(study_name=name, storage=storage)
    walls = _eval_walls(storage)
    trials_ = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    eval_s = [walls.get(t.user_attrs.get("arch_hash"), 0.0) if t.user_attrs.get("status") == "evaluated" else 0.0
              for t in trials_]
    out = _summarise(variant, trials_, eval_s, setup_s, run_s)
    out.update(evaluated=res.evaluated, rejected=res.rejected, cached=res.cached, failed=res.failed,
               commits_per_trial=commits / len(trials_))
    return out


def run_plain(variant: str, folder: Path, trials: int, seed: int) -> dict[str, Any]:
    """The same work without nasconv's driver: ask, suggest, cost, budget, evaluate, tell."""
    space = load_space(SPACE)
    budget = parse_budget(BUDGET)
    keys = [k for k, v in (("macs", budget.macs), ("params", budget.params)) if v is not None]
    storage: Any = None
    if variant == "plain-sqlite":
        storage = optuna.storages.RDBStorage(f"sqlite:///{folder}/{variant}-{seed}.db")
    t0 = time.perf_counter()
    study = optuna.create_study(storage=storage, study_name=f"overhead-{variant}-{seed}",
                                sampler=make_sampler(SAMPLER, seed, len(OBJECTIVES)),
                                directions=["maximize", "minimize"])
    setup_s = time.perf_counter() - t0
    eval_s: dict[int, float] = {}
    evaluated = rejected = 0
    commits0 = COMMITS[0]
    t0 = time.perf_counter()
    while evaluated < trials:
        trial = study.ask()
        arch = suggest_arch(trial, space)
        cost = estimate_cost(arch)
        for k, v in zip(keys, budget.constraints(macs=cost.macs, params=cost.params)):
            trial.set_constraint(k, v)
        if budget.violations(macs=cost.macs, params=cost.params):
            study.tell(trial, [0.0, cost.macs / 4e7])
            rejected += 1
            continue
        t1 = time.perf_counter()
        m = trivial_evaluate(arch, EVAL)
        eval_s[trial.number] = time.perf_counter() - t1
        study.tell(trial, [m["score"], m["latency_ms"]])
        evaluated += 1
    run_s = time.perf_counter() - t0
    trials_ = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    out = _summarise(variant, trials_, [eval_s.get(t.number, 0.0) for t in trials_], setup_s, run_s)
    out.update(evaluated=evaluated, rejected=rejected, cached=0, failed=0,
               commits_per_trial=(COMMITS[0] - commits0) / len(trials_))
    if storage is not None:
        storage.engine.dispose()
    return out


def _summarise(variant: str, trials: list[optuna.trial.FrozenTrial], eval_s: list[float], setup_s: float,
               run_s: float) -> dict[str, Any]:
    starts = [t.datetime_start.timestamp() for t in trials]
    end = max(t.datetime_complete.timestamp() for t in trials)
    span = end - starts[0]
    # one trial's cycle: its ask to the next ask (the last one: to its tell), minus its evaluator
    cycles = [(b - a) - e for a, b, e in zip(starts, starts[1:] + [end], eval_s)]
    n_eval = sum(1 for t in trials if _is_evaluated(t))
    overhead = span - sum(eval_s)
    return {
        "variant": variant, "optuna_trials": len(trials), "n_evaluated": n_eval, "setup_s": setup_s,
        "run_s": run_s, "span_s": span, "evaluator_s": sum(eval_s), "overhead_s": overhead,
        "ms_per_evaluated_trial": overhead / n_eval * 1e3, "ms_per_optuna_trial": overhead / len(trials) * 1e3,
        "cycle_ms": [c * 1e3 for c in cycles],
        "cycle_ms_evaluated": [c * 1e3 for t, c in zip(trials, cycles) if _is_evaluated(t)],
        "cycle_ms_rejected": [c * 1e3 for t, c in zip(trials, cycles) if not _is_evaluated(t)],
        "first_half_ms": statistics.median(cycles[: len(cycles) // 2]) * 1e3,
        "second_half_ms": statistics.median(cycles[len(cycles) // 2:]) * 1e3,
    }


def _is_evaluated(t: optuna.trial.FrozenTrial) -> bool:
    status = t.user_attrs.get("status")
    if status is not None:
        return status in ("evaluated", "cached")
    return not any(v > 0 for v in (t.constraints or {}).values())  # plain loop: no user attributes


def default_trial_s() -> tuple[float, dict[str, Any]]:
    """One real default evaluation of a random within-budget resnet50 architecture."""
    space = load_space(SPACE)
    budget = parse_budget(BUDGET)
    rng = random.Random(0)
    while True:
        arch = space.sample(rng)
        cost = estimate_cost(arch)
        if not budget.violations(macs=cost.macs, params=cost.params):
            break
    t0 = time.perf_counter()
    m = evaluate(arch, EvalConfig(threads=2))
    wall = time.perf_counter() - t0
    return wall, {"ops": arch.ops_label(), "macs": cost.macs, "train_time_s": m["train_time_s"],
                  "latency_ms": m["latency_ms"], "accuracy": m["accuracy"], "load_before": None}


def ray_startup() -> tuple[Any, dict[str, float]]:
    from nasconv.runners import RayRunner

    t0 = time.perf_counter()
    runner = RayRunner(workers=1, cpus_per_worker=2)
    init_s = time.perf_counter() - t0
    arch = load_space(SPACE).baseline()
    t0 = time.perf_counter()
    runner.submit("warm-up", EvaluationJob(trivial_evaluate), arch.to_dict(), EVAL.to_dict())
    done: list = []
    while not done:
        done = runner.wait(timeout=1.0)
    first_s = time.perf_counter() - t0
    if done[0][2]:
        raise RuntimeError(f"the Ray warm-up task failed: {done[0][2]}")
    t0 = time.perf_counter()
    runner.submit("warm-up-2", EvaluationJob(trivial_evaluate), arch.to_dict(), EVAL.to_dict())
    done = []
    while not done:
        done = runner.wait(timeout=1.0)
    second_s = time.perf_counter() - t0
    return runner, {"ray_init_s": init_s, "first_task_s": first_s, "warm_task_round_trip_s": second_s}


#: (file suffix, function name, label) of the calls the profile table reports
PROFILED = (
    ("nasconv/search/trials.py", "_claim", "SearchDriver._claim (claim lock, count the study's slots, ask)"),
    ("optuna/study/study.py", "ask", "  Study.ask"),
    ("nasconv/search/trials.py", "_ask_one", "SearchDriver._ask_one (suggest, cost, attrs, cache lookup, submit)"),
    ("nasconv/search/params.py", "suggest_arch", "  suggest_arch (the sampler's suggest_categorical calls)"),
    ("nasconv/storage/tables.py", "get_cached", "  NasconvTables.get_cached"),
    ("nasconv/search/trials.py", "_finish", "SearchDriver._finish (cache the result, tell)"),
    ("nasconv/storage/tables.py", "put_cached", "  NasconvTables.put_cached"),
    ("nasconv/search/trials.py", "_tell_metrics",
     "  SearchDriver._tell_metrics (all calls; a cached trial calls it from _ask_one)"),
    ("optuna/study/study.py", "tell", "    Study.tell"),
    ("nasconv/search/driver.py", "snapshot", "    SearchDriver.snapshot (front, HV, stored snapshot)"),
    ("nasconv/storage/tables.py", "add_snapshot", "      NasconvTables.add_snapshot"),
    ("nasconv/search/driver.py", "evaluated_count", "SearchDriver.evaluated_count (all calls)"),
    ("optuna/trial/_trial.py", "set_user_attr", "Trial.set_user_attr (all calls)"),
    ("optuna/trial/_trial.py", "set_constraint", "Trial.set_constraint (all calls)"),
    ("optuna/storages/_cached_storage.py", "get_all_trials", "storage get_all_trials (all calls)"),
    ("~", "<method 'commit' of 'sqlite3.Connection' objects>", "sqlite3 commit (all calls)"),
)


def profile_inline(folder: Path, trials: int) -> dict[str, Any]:
    """One more inline run under cProfile: where a trial's time goes (cumulative, nested)."""
    import cProfile
    import pstats

    from nasconv.runners import InlineRunner

    prof = cProfile.Profile()
    prof.enable()
    r = run_driver("inline", InlineRunner(threads=2), folder, trials, 999)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = []
    for suffix, func, label in PROFILED:
        hits = [(v[1], v[3]) for (path, _line, name), v in stats.items() if name == func and path.endswith(suffix)]
        calls, cum = sum(h[0] for h in hits), sum(h[1] for h in hits)
        rows.append({"label": label, "calls_per_trial": calls / r["optuna_trials"],
                     "ms_per_trial": cum / r["optuna_trials"] * 1e3})
    return {"ms_per_evaluated_trial": r["ms_per_evaluated_trial"], "optuna_trials": r["optuna_trials"], "rows": rows}


# --- report -------------------------------------------------------------------------------


def _q(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = (len(xs) - 1) * q
    lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def summarise(runs: list[dict[str, Any]], default_s: float, repeats: int) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {}
    for v in VARIANTS:
        rs = [r for r in runs if r["variant"] == v]
        if not rs:
            continue
        cyc_e = [c for r in rs for c in r["cycle_ms_evaluated"]]
        cyc_r = [c for r in rs for c in r["cycle_ms_rejected"]]
        data[v] = {
            "ms_per_evaluated_trial": statistics.median(r["ms_per_evaluated_trial"] for r in rs),
            "ms_per_evaluated_trial_runs": [r["ms_per_evaluated_trial"] for r in rs],
            "ms_per_optuna_trial": statistics.median(r["ms_per_optuna_trial"] for r in rs),
            "median_cycle_ms_evaluated": _q(cyc_e, 0.5), "p90_cycle_ms_evaluated": _q(cyc_e, 0.9),
            "median_cycle_ms_rejected": _q(cyc_r, 0.5) if cyc_r else None, "rejected": [r["rejected"] for r in rs],
            "optuna_trials": [r["optuna_trials"] for r in rs], "setup_s": statistics.median(r["setup_s"] for r in rs),
            "first_half_ms": statistics.median(r["first_half_ms"] for r in rs),
            "second_half_ms": statistics.median(r["second_half_ms"] for r in rs),
            "evaluator_ms_per_trial": statistics.median(r["evaluator_s"] / r["n_evaluated"] * 1e3 for r in rs),
            "commits_per_trial": statistics.median(r["commits_per_trial"] for r in rs),
        }
        data[v]["share_of_default_trial"] = data[v]["ms_per_evaluated_trial"] / 1e3 / default_s
    base = data["plain-memory"]["ms_per_evaluated_trial"]
    lines = ["| variant | ms / evaluated trial (median of runs) | per run | ms / Optuna trial | median trial "
             "cycle ms (p90) | first / second half of run, median ms | rejected trials per run | x plain-memory | "
             "share of a default trial | DB commits / trial |", "|---|---:|---|---:|---:|---:|---|---:|---:|---:|"]
    for v, d in data.items():
        lines.append(
            f"| {v} | {d['ms_per_evaluated_trial']:.1f} | "
            f"{', '.join(f'{x:.1f}' for x in d['ms_per_evaluated_trial_runs'])}"
            f" | {d['ms_per_optuna_trial']:.1f} | {d['median_cycle_ms_evaluated']:.1f} "
            f"({d['p90_cycle_ms_evaluated']:.1f})"
            f" | {d['first_half_ms']:.1f} / {d['second_half_ms']:.1f} | {', '.join(map(str, d['rejected']))}"
            f" | {d['ms_per_evaluated_trial'] / base:.1f} | {d['share_of_default_trial'] * 100:.2f}% |"
            f" {d['commits_per_trial']:.1f} |")
    nas = {v: data[v]["ms_per_evaluated_trial"] for v in ("ray", "inline") if v in data}
    worst = max(nas.values())
    ratios = []
    ms = {v: d["ms_per_evaluated_trial"] for v, d in data.items()}
    if "ray" in ms and "inline" in ms:
        ratios.append(f"ray / inline {ms['ray'] / ms['inline']:.2f}")
    if "inline" in ms and "plain-sqlite" in ms:
        ratios.append(f"inline / plain-sqlite {ms['inline'] / ms['plain-sqlite']:.2f}")
    for v in ("inline-tmpfs",):
        if v in data and "inline" in data:
            ratios.append(f"{v} / inline "
                          f"{data[v]['ms_per_evaluated_trial'] / data['inline']['ms_per_evaluated_trial']:.2f}")
    if "plain-sqlite" in data:
        ratios.append(f"plain-sqlite / plain-memory {data['plain-sqlite']['ms_per_evaluated_trial'] / base:.2f}")
    text = "\n".join(lines + [
        "",
        f"- Goal \"under {GOAL_MS:.0f} ms per trial\" (nasconv's search, per evaluated trial, median of {repeats} "
        f"runs): **{'holds' if worst < GOAL_MS else 'does not hold'}**: "
        + ", ".join(f"{v} {t:.1f} ms" for v, t in nas.items())
        + f"; that is {worst / 1e3 / default_s * 100:.2f}% of a default trial ({default_s:.1f} s) at most.",
        "- Side-by-side (same runs): " + "; ".join(ratios) + ".",
    ])
    return text, data


def profile_text(prof: dict[str, Any]) -> str:
    lines = [f"### Where an inline trial's time goes (one more inline run of {prof['optuna_trials']} trials under "
             f"cProfile: {prof['ms_per_evaluated_trial']:.0f} ms per trial with the profiler's own cost; times are "
             "cumulative and nested, indented under their caller)", "",
             "| call | calls / trial | ms / trial |", "|---|---:|---:|"]
    for r in prof["rows"]:
        label = r["label"].replace("  ", "&nbsp;&nbsp;")
        lines.append(f"| {label} | {r['calls_per_trial']:.1f} | {r['ms_per_trial']:.1f} |")
    return "\n".join(lines)


def markdown(meta: dict[str, Any], text: str) -> str:
    s = meta["ray_startup"]
    d = meta["default_trial"]
    return "\n".join([
        "# Search orchestration overhead per trial",
        "",
        f"Generated by `benchmarks/search_overhead.py`; do not edit by hand. Command: `{meta['command']}`",
        "",
        f"- date: {meta['date']}; run time {meta['run_time_s']:.0f} s",
        f"- torch {meta['torch']}, Optuna {meta['optuna']}, Ray {meta['ray']}, SQLAlchemy {meta['sqlalchemy']}, "
        f"Python {meta['python']}; CPU: {meta['cpu']} ({meta['cpu_count']} logical CPUs); "
        f"OMP_WAIT_POLICY={meta['omp_wait_policy']}",
        f"- load average (1/5/15 min) before: {meta['load_before']}, after: {meta['load_after']}",
        f"- nasconv revision: {meta['git']}",
        f"- `{SPACE}` at `{BUDGET}`, sampler {SAMPLER}, objectives accuracy (score) and latency, {meta['trials']} "
        f"evaluated trials per run, {meta['repeats']} runs per variant, interleaved ({', '.join(meta['variants'])}, "
        f"then again); storage: a fresh SQLite file per run under {meta['tmp']} (ext4 disk; plain-memory: Optuna's "
        "in-memory storage)",
        "- variants: ray = `run_search` with a RayRunner (local, 1 worker x 2 CPUs); inline = `run_search` with "
        "the InlineRunner (both on nasconv's SQLite settings: WAL journal, synchronous=NORMAL); "
        "inline-tmpfs = inline, the SQLite file on /dev/shm (RAM: no disk syncs; what storage tuning could "
        "reach at best); plain-memory / plain-sqlite = a plain Optuna ask/tell loop (suggest_arch, estimate_cost, "
        "budget constraints, the evaluator called directly), in-memory / SQLite storage",
        "- DB commits / trial: SQLAlchemy transactions committed per Optuna trial (Optuna's storage and "
        "nasconv's tables)",
        "- evaluator: `trivial_evaluate` (no model: exact MACs/params, made-up score and latency, the same keys a "
        "real `evaluate` returns); its own wall time is subtracted",
        "- timed: first ask to last tell (Optuna's datetime_start / datetime_complete); not timed: Ray startup "
        f"(`ray.init` {s['ray_init_s']:.1f} s, first task incl. worker start {s['first_task_s']:.1f} s, a warm task "
        f"round trip {s['warm_task_round_trip_s'] * 1e3:.0f} ms) and study creation (median `SearchDriver(...)` "
        f"{meta['setup_driver_s'] * 1e3:.0f} ms)",
        f"- default trial: one real default `evaluate` (brief training, Fashion-MNIST, latency at 224 px, 2 threads) "
        f"of a random within-budget architecture ({d['ops']}): **{meta['default_trial_s']:.1f} s** "
        f"({d['source']})",
        "- trial cycle: one Optuna trial's ask to the next ask, minus its evaluator time; first / second half: "
        "the median cycle over the first and the last half of a run's trials (growth with the study's size)",
        "",
        "## Results",
        "",
        text,
        "",
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60, help="evaluated trials per run (default 60)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--default-trial-s", type=float, default=None,
                        help="a default trial's seconds, instead of measuring one real evaluation")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the extra inline run under cProfile")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or "plain-memory" not in variants:
        parser.error(f"--variants: known {', '.join(VARIANTS)}; plain-memory is the baseline and must be included")
    if args.trials < 2 or args.repeats < 1:
        parser.error("--trials must be >= 2 and --repeats >= 1")
    out_dir = Path(args.out) if args.out else Path(__file__).resolve().parent / "results"
    torch.set_num_threads(2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_before = _load_avg()
    t_all = time.perf_counter()

    if args.default_trial_s is None:
        print(f"one default evaluation (load {_load_avg()}) ...", flush=True)
        default_s, default_info = default_trial_s()
        default_info.update(source=f"measured here, load before {load_before}")
    else:
        default_s, default_info = args.default_trial_s, {"ops": "n/a", "source": "given with --default-trial-s"}
    print(f"default trial {default_s:.1f} s", flush=True)

    runner, startup = (ray_startup() if "ray" in variants else
                       (None, {"ray_init_s": float("nan"), "first_task_s": float("nan"),
                               "warm_task_round_trip_s": float("nan")}))
    print(f"ray startup {startup}", flush=True)
    runs = []
    prof = None
    with tempfile.TemporaryDirectory(prefix="nasconv-overhead-") as tmp, \
            tempfile.TemporaryDirectory(prefix="nasconv-overhead-", dir=TMPFS if TMPFS.is_dir() else None) as ram:
        folder = Path(tmp)
        try:
            for rep in range(args.repeats):
                for v in variants:
                    if v in ("ray", "inline", "inline-tmpfs"):
                        from nasconv.runners import InlineRunner

                        r = run_driver(v, runner if v == "ray" else InlineRunner(threads=2),
                                       Path(ram) if v == "inline-tmpfs" else folder, args.trials, rep)
                    else:
                        r = run_plain(v, folder, args.trials, rep)
                    r["repeat"] = rep
                    r["load"] = _load_avg()
                    runs.append(r)
                    print(f"repeat {rep} {v:12s}: {r['ms_per_evaluated_trial']:7.1f} ms/evaluated trial, "
                          f"{r['ms_per_optuna_trial']:7.1f} ms/Optuna trial ({r['optuna_trials']} trials, "
                          f"{r['rejected']} rejected), span {r['span_s']:.2f} s; load {r['load']}", flush=True)
            prof = profile_inline(folder, args.trials) if args.profile else None
        finally:
            if runner is not None:
                runner.shutdown()
    run_time = time.perf_counter() - t_all
    text, data = summarise(runs, default_s, args.repeats)
    if prof is not None:
        text += "\n\n" + profile_text(prof)
    drivers = [r["setup_s"] for r in runs if r["variant"] in ("ray", "inline")]
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/search_overhead.py" + (
            "" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:])),
        "torch": torch.__version__, "optuna": optuna.__version__, "ray": _version("ray"),
        "sqlalchemy": sa.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "python": platform.python_version(), "cpu": cpu_model(),
        "cpu_count": os.cpu_count(), "git": git_revision(), "load_before": load_before, "load_after": _load_avg(),
        "run_time_s": run_time, "trials": args.trials, "repeats": args.repeats, "tmp": tempfile.gettempdir(),
        "ray_startup": startup, "setup_driver_s": statistics.median(drivers) if drivers else float("nan"),
        "default_trial_s": default_s, "default_trial": default_info, "variants": variants,
    }
    print("\n" + text + f"\n\nrun time {run_time:.0f} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "search_overhead.md").write_text(markdown(meta, text))
    (out_dir / "search_overhead.json").write_text(json.dumps({"meta": meta, "summary": data, "profile": prof,
                                                              "runs": runs},
                                                             indent=1) + "\n")
    print(f"wrote {out_dir / 'search_overhead.md'} and {out_dir / 'search_overhead.json'}")
    return 0


def _version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:
        return "n/a"


if __name__ == "__main__":
    sys.exit(main())
