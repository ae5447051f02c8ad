"""Multi-fidelity (ASHA) vs flat search vs random, at equal evaluation compute (issue #18 part 4).

Each (method, seed) is one study in its own SQLite file (no evaluation cache shared between
runs, so no run gets another's work for free), grown a few trials at a time until the CPU-seconds
of its evaluations reach ``--budget-s``:

- ``mf``: TPE with ``--rungs R --eta E``; rung 0 trains on ``top / E**(R-1)`` images, the top rung
  on ``top`` and validates on the whole held-out split (a lower rung on as many images as it trains
  on, 500 to 2,000: nasconv's rule);
- ``flat``: TPE, every candidate at the top fidelity (``top`` images, 2,000 validation images);
- ``random``: random sampling at the top fidelity.

Objectives: accuracy and MACs (exact), so that the comparison is about finding accurate networks,
not about the latency noise of a shared machine. Every evaluation runs on 1 torch thread; runs go
on ``--jobs`` processes side by side (one per core).

Score: each run's final front (multi-fidelity: at its highest rung) is re-evaluated at the top
fidelity with another training seed (the front a user would act on, measured afresh), and its
hypervolume taken against one fixed reference point (accuracy 0, the budget's MACs), divided by
that MACs budget. Methods are compared by a one-sided exact Mann-Whitney test over seeds. Also:
candidates screened per hour of evaluation, the share of compute per rung, and how often a front
member is dominated once re-measured (noise).

Resumable: run the same command again and finished runs and re-evaluations are reused.
``--report-only`` writes the report from what is stored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from _common import cpu_model, git_revision, load_avg, mann_whitney_p, write_atomic

from nasconv.arch import ArchSpec
from nasconv.budget import parse_budget
from nasconv.evaluate import EvalConfig, eval_config_for, evaluate
from nasconv.results import hypervolume, study_front
from nasconv.search import SearchConfig, run_search
from nasconv.search.fidelity import Fidelity
from nasconv.spaces import load_space
from nasconv.stats import median_interval
from nasconv.storage import NasconvTables, open_study

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("mf", "flat", "random")
RESEED = 1000  # the re-evaluation's training seed: not one any search trained with
VAL_IMAGES = 2000


def eval_config(args: argparse.Namespace, train_images: int, *, seed: int = 0) -> EvalConfig:
    """The space's own proxy settings (resnet20 trains whole; resnet50 a reduced copy), 2,000
    validation images, 1 thread."""
    ev = eval_config_for(load_space(args.space), data=args.data, latency=False, train_images=train_images,
                         val_images=VAL_IMAGES, seed=seed)
    return dataclasses.replace(ev, threads=1)


def run_config(args: argparse.Namespace, method: str, seed: int, trials: int) -> SearchConfig:
    mf = method == "mf"
    # multi-fidelity's top rung validates on the whole held-out split (nasconv's rule); flat search
    # and the re-evaluation on 2,000 images like the default proxy
    ev = eval_config(args, base_images(args) if mf else args.top_images)
    return SearchConfig(space=args.space, budget=args.budget, trials=trials, sampler="random" if method == "random"
                        else "tpe", objectives=("accuracy", "macs"), seed=seed, storage=storage_of(args, method, seed),
                        study_name="run", eval=ev, runner="inline", evaluate_baseline=False, progress=False,
                        rungs=args.rungs if mf else 1, eta=args.eta)


def base_images(args: argparse.Namespace) -> int:
    return round(args.top_images / args.eta ** (args.rungs - 1))


def storage_of(args: argparse.Namespace, method: str, seed: int) -> str:
    return f"sqlite:///{args.workdir}/{method}-s{seed}.db"


def compute_used(storage: str) -> dict[str, Any]:
    """Evaluation seconds spent by a run, per rung, and the candidates it screened (rung 0)."""
    try:
        study, tables = open_study("run", storage, readonly=True)
    except Exception:
        return {"seconds": 0.0, "per_rung": {}, "screened": 0}
    try:
        per_rung: dict[int, float] = {}
        screened = 0
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.user_attrs.get("status") == "evaluated":
                per_rung[0] = per_rung.get(0, 0.0) + float(t.user_attrs.get("eval_time_s") or 0)
                screened += 1
        for r in tables.rung_results("run"):
            per_rung[r.rung] = per_rung.get(r.rung, 0.0) + float(r.metrics.get("eval_time_s") or 0)
        return {"seconds": sum(per_rung.values()), "per_rung": per_rung, "screened": screened}
    finally:
        tables.dispose()


def run_one(job: tuple[argparse.Namespace, str, int]) -> dict[str, Any]:
    args, method, seed = job
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = 0
    t0 = time.monotonic()
    while True:
        used = compute_used(storage_of(args, method, seed))
        if used["seconds"] >= args.budget_s:
            break
        trials = max(trials, used["screened"]) + (args.step * (3 if method == "mf" else 1))
        run_search(run_config(args, method, seed, trials))
    scored = rescore(args, method, seed)  # here, so that re-evaluations also run side by side
    print(f"{method} seed {seed}: {used['screened']} screened, {used['seconds']:.0f} s of evaluation, "
          f"{time.monotonic() - t0:.0f} s wall, HV {scored['hv']:.4f}", file=sys.stderr, flush=True)
    return {"method": method, "seed": seed, **used}


def rescore(args: argparse.Namespace, method: str, seed: int) -> dict[str, Any]:
    """The run's final front re-evaluated at the top fidelity with another seed; cached in the run's database."""
    storage = storage_of(args, method, seed)
    study, tables = open_study("run", storage, readonly=True)
    rows = tables.rung_results("run")
    front = study_front(study, rows)
    tables.dispose()
    fresh = eval_config(args, args.top_images, seed=RESEED)
    key = fresh.settings_key()
    cache = NasconvTables(storage)
    members = []
    try:
        for t in front:
            arch = ArchSpec.from_dict(t.user_attrs["arch"])
            m = cache.get_cached(key, arch.arch_hash)
            if m is None:
                m = evaluate(arch, fresh)
                cache.put_cached(key, arch.arch_hash, args.space, m)
            members.append({"trial": t.number, "ops": t.user_attrs.get("ops"), "macs": t.user_attrs["macs"],
                            "searched_accuracy": t.user_attrs.get("accuracy"), "rung": t.user_attrs.get("rung", 0),
                            "remeasured_accuracy": m["accuracy"], "val_images": m.get("val_images")})
    finally:
        cache.dispose()
    macs_budget = float(parse_budget(args.budget).macs)
    pts = np.array([[-m["remeasured_accuracy"], m["macs"]] for m in members], dtype=float)
    hv = hypervolume(pts, [0.0, macs_budget]) / macs_budget if len(pts) else 0.0
    dominated = sum(1 for i, p in enumerate(pts) if any((q <= p).all() and (q < p).any()
                                                        for j, q in enumerate(pts) if j != i))
    return {"front": members, "hv": hv, "dominated_after_remeasure": dominated}


def analyse(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    for r in runs:
        r.update(rescore(args, r["method"], r["seed"]))
        by[r["method"]].append(r)
    out: dict[str, Any] = {"methods": {}}
    by = {m: rs for m, rs in by.items() if rs}
    for m, rs in by.items():
        hv = [r["hv"] for r in rs]
        per_hour = [r["screened"] / (r["seconds"] / 3600) for r in rs if r["seconds"]]
        share: dict[str, float] = {}
        for r in rs:
            for rung, s in r["per_rung"].items():
                share[str(rung)] = share.get(str(rung), 0.0) + s
        total = sum(share.values()) or 1.0
        members = sum(len(r["front"]) for r in rs)
        out["methods"][m] = {
            "hv": hv, "hv_median": statistics.median(hv), "hv_median_ci": list(median_interval(hv)),
            "screened_per_hour_median": statistics.median(per_hour) if per_hour else 0.0,
            "screened_per_hour": per_hour, "compute_s": [r["seconds"] for r in rs],
            "compute_share_per_rung": {k: v / total for k, v in sorted(share.items())},
            "front_members": members,
            "dominated_after_remeasure": sum(r["dominated_after_remeasure"] for r in rs),
        }
    if "mf" in by and "flat" in by:
        out["p_mf_above_flat"] = mann_whitney_p(out["methods"]["mf"]["hv"], out["methods"]["flat"]["hv"])
        fl = out["methods"]["flat"]["screened_per_hour_median"]
        out["screening_ratio_mf_vs_flat"] = out["methods"]["mf"]["screened_per_hour_median"] / fl if fl else None
    for m in ("mf", "flat"):
        if m in by and "random" in by:
            out[f"p_{m}_above_random"] = mann_whitney_p(out["methods"][m]["hv"], out["methods"]["random"]["hv"])
    out["runs"] = runs
    return out


def rung_sizes(args: argparse.Namespace) -> tuple[str, str]:
    """Multi-fidelity's training and validation images per rung, as "a / b / c" (nasconv's rule)."""
    fid = Fidelity(args.rungs, args.eta)
    train = [fid.train_images(base_images(args), r) for r in range(args.rungs)]
    val = [fid.val_images(VAL_IMAGES, n, r) for r, n in enumerate(train)]
    return " / ".join(f"{n:,}" for n in train), " / ".join("all" if n is None else f"{n:,}" for n in val)


def markdown(args: argparse.Namespace, an: dict[str, Any], meta: dict[str, Any]) -> str:
    train, val = rung_sizes(args)
    finished = ", ".join(f"{m} {len(d['hv'])}" for m, d in an["methods"].items())
    lines = [f"# Multi-fidelity vs flat vs random at equal evaluation compute: {args.space}, {args.data}", "",
             f"- Machine: {meta['cpu']}; torch threads per evaluation: 1; {args.jobs} runs side by side; "
             f"load average at the end {meta['load']}; revision {meta['revision']}; {meta['date']}"
             + (f"; report made again at {meta['report_revision']}." if meta.get("report_revision") else "."),
             f"- Budget {args.budget}; objectives accuracy and MACs; {args.budget_s:.0f} s of evaluation per run "
             f"(CPU-seconds at 1 thread, measured per evaluation); seeds finished per method: {finished} of "
             f"{args.seeds}.",
             f"- Top fidelity: {args.top_images:,} training images (flat and random: 2,000 validation images); "
             f"multi-fidelity: {args.rungs} rungs, eta {args.eta:g}, rungs train on {train} images and "
             f"validate on {val} held-out images.",
             "- Score: the final front re-evaluated at the top fidelity (2,000 validation images) with another "
             "training seed; hypervolume against "
             "(accuracy 0, the budget's MACs), divided by the MACs budget. Median [range of the seeds: with 5 "
             "seeds the distribution-free 95% interval of a median is the range].", "",
             "| method | HV median [interval] | per seed | evaluation s per run, median [range] (a run stops at the "
             "first step past the budget) | candidates screened per hour (median) | compute share "
             "per rung | front members dominated once re-measured |", "|---|---|---|---|---|---|---|"]
    for m, d in an["methods"].items():
        share = ", ".join(f"r{k}: {v:.0%}" for k, v in d["compute_share_per_rung"].items())
        cs = d["compute_s"]
        lines.append(f"| {m} | {d['hv_median']:.4f} [{d['hv_median_ci'][0]:.4f}, {d['hv_median_ci'][1]:.4f}] | "
                     f"{', '.join(f'{h:.4f}' for h in d['hv'])} | {statistics.median(cs):.0f} [{min(cs):.0f}, "
                     f"{max(cs):.0f}] | {d['screened_per_hour_median']:.0f} | {share} | "
                     f"{d['dominated_after_remeasure']} of {d['front_members']} |")
    lines.append("")
    for key, text in (("p_mf_above_flat", "multi-fidelity above flat"), ("p_mf_above_random", "multi-fidelity above "
                      "random"), ("p_flat_above_random", "flat above random")):
        if key in an:
            verdict = "resolved at 5%" if an[key] <= 0.05 else "not resolved at 5%"
            lines.append(f"- {text}: one-sided exact Mann-Whitney p = {an[key]:.3f} ({verdict}).")
    if an.get("screening_ratio_mf_vs_flat"):
        lines.append(f"- Multi-fidelity screened {an['screening_ratio_mf_vs_flat']:.1f}x as many candidates per hour "
                     "of evaluation as flat search (medians).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="resnet20")
    ap.add_argument("--budget", default="40mflops")
    ap.add_argument("--data", default="fashion-mnist", help="e.g. imagefolder:/tmp/cifar10 for the CIFAR-10 JPEGs")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=300.0, help="evaluation seconds per run")
    ap.add_argument("--top-images", type=int, default=4000)
    ap.add_argument("--rungs", type=int, default=3)
    ap.add_argument("--eta", type=float, default=3.0)
    ap.add_argument("--step", type=int, default=1, help="trials added per search call (x3 for multi-fidelity)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/nasconv-bench-mf")
    ap.add_argument("--tag", default="")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    tag = args.tag or f"{args.space}-{args.data.split(':')[0]}"
    args.workdir = f"{args.workdir}/{tag}"
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    jobs = [(args, m, s) for s in range(args.seeds) for m in args.methods]
    if args.report_only:  # what has finished: runs that used their budget
        runs = [{"method": m, "seed": s, **compute_used(storage_of(args, m, s))} for _, m, s in jobs]
        runs = [r for r in runs if r["seconds"] >= args.budget_s]
    else:
        with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            runs = pool.map(run_one, jobs, chunksize=1)
    an = analyse(args, runs)
    meta = {"cpu": cpu_model(), "revision": git_revision(), "load": load_avg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    earlier = RESULTS / f"multifidelity-{tag}.json"
    if args.report_only and earlier.exists():  # the runs' machine, revision and date, not this report's
        meta = {**json.loads(earlier.read_text())["meta"], "report_revision": meta["revision"]}
    RESULTS.mkdir(exist_ok=True)
    settings = {k: v for k, v in vars(args).items()}
    write_atomic(RESULTS / f"multifidelity-{tag}.json", json.dumps({"meta": meta, "settings": settings, **an},
                                                                    indent=1, default=str))
    write_atomic(RESULTS / f"multifidelity-{tag}.md", markdown(args, an, meta))
    print(markdown(args, an, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
