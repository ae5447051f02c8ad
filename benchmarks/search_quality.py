"""Search quality: hypervolume after N evaluated trials for nsga2, tpe and random, several seeds each.

    python benchmarks/search_quality.py [--space resnet50] [--budget 4gflops] [--trials 60] [--seeds 3]
        [--samplers nsga2,tpe,random] [--storage sqlite:////tmp/nasconv-bench-quality.db] [--phase 20]
        [--deadline-min 70] [--latency-resolution PX] [--threads 1] [--retest 12] [--signal-archs 8] [--signal-seeds 4]
        [--report-only] [--out DIR]

Every sampler x seed is its own study (``q-<sampler>-s<seed>``) on ``resnet50`` at ``4gflops``,
objectives accuracy (the ``synflow`` zero-cost score, maximised) and latency (measured, ms,
batch 1 at 224 x 224, minimised), all in one SQLite file, so that the evaluation cache is shared:
an architecture already evaluated by any study is not evaluated again, and its latency is then
the same number in every study that meets it (latency noise does not favour one sampler).

The studies are grown in phases (all to 20 evaluated trials, then all to 40, then 60), so that a
run stopped by ``--deadline-min`` still compares every sampler and seed at one trial count. The
script is resumable: a study that already holds its target is skipped, one that holds fewer is
continued by ``run_search``. A continued study is given a sampler seed derived from its seed and
its trial count (see ``resume_seed``): at nasconv 3f42f1f a study resumed with its own seed
replayed the architectures it proposed at the start (for ``random`` every one of them, served by
the cache as "cached" trials). The driver now re-seeds a resumed study itself (``_reseed``), so
this is belt and braces, kept so that the stored results are reproduced by this script.

Hypervolume: each study's feasible front (evaluated and cached trials; over-budget candidates
are never evaluated) against ONE reference point common to all studies (score: the minimum over
all evaluated trials - 1; latency: the maximum x 1.1), divided by the box between that point and
the ideal point (best score, best latency over all studies), so 1.0 would be a single candidate
best at both. The study's own final snapshot hypervolume (its own reference point, not
comparable across studies) is reported beside it.

After the searches: ``--retest`` architectures are measured again (how repeatable was the
latency objective?) and ``--signal-archs`` architectures are scored again under
``--signal-seeds`` initialisation seeds (how much of the score is the architecture?).

``--space``/``--budget`` run another setting beside the issue's (its own storage and files).
Writes ``search_quality[-<space>-<budget>].md``, ``.json`` and ``.png`` to ``--out`` (default
benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Before torch loads its OpenMP runtime: threads that spin while they wait for work make a
# multi-threaded forward pass 10-50x slower when other processes share the cores (measured on
# this machine: 1.3-2.8 s instead of ~70 ms for a resnet50 variant at 112 px, 2 threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import optuna
import torch
from _common import cpu_model, git_revision, mann_whitney_p
from _common import load_avg as _load_avg

from nasconv.evaluate import EvalConfig
from nasconv.search import SearchConfig, run_search
from nasconv.storage import NasconvTables
from nasconv.train import TrainConfig

#: the issue's setting; --space/--budget run another one beside it (own storage and report files)
SPACE = "resnet50"
BUDGET = "4gflops"
OBJECTIVES = ("accuracy", "latency")
SAMPLERS = ("nsga2", "tpe", "random")


#: torch threads for scoring and latency. One: on this 2-core machine, shared with other work, a
#: 2-thread forward pass is only ~10% faster than a 1-thread one but its median latency is about
#: 2.5x less repeatable (repeated measurements of 10 architectures: median deviation 7.3% with 2
#: threads, 2.9% with 1), because one busy core stalls every parallel region. The 7-seed run at
#: 2 threads (results/search_quality-threads2.md, on an Intel Xeon) retested at Spearman 0.45:
#: mostly noise (the 10-seed run at 1 thread, on an AMD EPYC: 0.78).
THREADS = 1


def eval_config(latency_resolution: int | None, threads: int = THREADS) -> EvalConfig:
    return EvalConfig(proxy="synflow", latency=True, latency_resolution=latency_resolution, latency_max_time_s=3.0,
                      train=TrainConfig(resolution=32), zc_batch=32, threads=threads)


DEFAULT_STORAGE = "sqlite:////tmp/nasconv-bench-quality.db"
CURVE_STEP = 10


def setting_tag(space: str, budget: str) -> str:
    """'' for the issue's setting, '-<space>-<budget>' for another (file and storage names)."""
    return "" if (space, budget) == (SPACE, BUDGET) else f"-{space}-{budget}"


def default_storage(space: str, budget: str) -> str:
    return DEFAULT_STORAGE.removesuffix(".db") + setting_tag(space, budget) + ".db"


def study_name(sampler: str, seed: int) -> str:
    return f"q-{sampler}-s{seed}"


def resume_seed(seed: int, n_trials: int) -> int:
    """The study's seed for a fresh study; a different, reproducible one for a continued study."""
    return seed if n_trials == 0 else seed * 1_000_003 + n_trials


def _load(name: str, storage: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _evaluated(study: optuna.Study | None) -> list[optuna.trial.FrozenTrial]:
    if study is None:
        return []
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted((t for t in done if t.user_attrs.get("status") in ("evaluated", "cached")), key=lambda t: t.number)


# --- running ------------------------------------------------------------------------------


def run_all(space: str, budget: str, samplers: list[str], seeds: int, trials: int, phase: int, storage: str,
            deadline_s: float, log_path: Path, ev: EvalConfig, command: str) -> list[dict[str, Any]]:
    """Grow every study to each phase target in turn; one JSON line per run in ``log_path``."""
    runs = []
    t_start = time.monotonic()
    targets = list(range(phase, trials, phase)) + [trials]
    for target in targets:
        for seed in range(seeds):
            for sampler in samplers:
                name = study_name(sampler, seed)
                study = _load(name, storage)
                have = len(_evaluated(study))
                if have >= target:
                    continue
                elapsed = time.monotonic() - t_start
                if elapsed > deadline_s:
                    print(f"deadline reached after {elapsed / 60:.0f} min: not growing {name} to {target}", flush=True)
                    return runs
                n_trials = len(study.trials) if study is not None else 0
                cfg = SearchConfig(space=space, budget=budget, trials=target, sampler=sampler, objectives=OBJECTIVES,
                                   seed=resume_seed(seed, n_trials), storage=storage, study_name=name, eval=ev,
                                   runner="inline", cpus_per_worker=ev.threads, evaluate_baseline=True, progress=True)
                cache_before = NasconvTables(storage).cache_size() if study is not None else None
                print(f"{name}: {have} -> {target} evaluated trials (sampler seed {cfg.seed}); "
                      f"load {_load_avg()}", flush=True)
                t0 = time.perf_counter()
                res = run_search(cfg)
                wall = time.perf_counter() - t0
                tables = NasconvTables(storage)
                rec = {"study": name, "sampler": sampler, "seed": seed, "sampler_seed": cfg.seed, "from": have,
                       "to": res.evaluated, "wall_s": wall, "cached": res.cached, "rejected": res.rejected,
                       "failed": res.failed, "cache_size_before": cache_before, "cache_size_after": tables.cache_size(),
                       "load": _load_avg(), "date": _now(), "phase": phase, "command": command,
                       "git": git_revision()}
                tables.dispose()
                runs.append(rec)
                with log_path.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"{name}: done in {wall:.0f} s ({res.cached} cached, {res.rejected} rejected)", flush=True)
    return runs


def forget_studies(storage: str, names: list[str], log_path: Path) -> int:
    """Delete these studies (Optuna's and nasconv's rows; the evaluation cache stays) and their
    lines in the run log; the number of run lines dropped."""
    tables = NasconvTables(storage)
    for name in names:
        if _load(name, storage) is not None:
            optuna.delete_study(study_name=name, storage=storage)
        tables.forget_study(name)
    tables.dispose()
    if not log_path.exists():
        return 0
    lines = log_path.read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["study"] not in names]
    log_path.write_text("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


# --- hypervolume --------------------------------------------------------------------------


def hv2d(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of 2-D loss points (both minimised) dominated below ``ref``."""
    pts = points[(points < ref).all(axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]  # by first loss, ties by second
    hv, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(hv)


def _losses(trials: list[optuna.trial.FrozenTrial]) -> np.ndarray:
    """(-score, latency_ms) per trial."""
    return np.array([[-float(t.user_attrs["score"]), float(t.user_attrs["latency_ms"])] for t in trials])


def analyse(samplers: list[str], seeds: int, storage: str) -> dict[str, Any]:
    """Per study: normalised hypervolumes against two references common to all studies.

    ``range``: each objective's reference sits 10% of its observed range (over all studies)
    beyond its worst value; ``wide``: score min - 1, latency max x 1.1. Each HV is divided by
    the box between its reference and the ideal point (best score, best latency over all).
    """
    studies: dict[str, list[optuna.trial.FrozenTrial]] = {}
    loaded: dict[str, optuna.study.Study] = {}
    for sampler in samplers:
        for seed in range(seeds):
            name = study_name(sampler, seed)
            study = _load(name, storage)
            if study is not None and _evaluated(study):
                loaded[name] = study
                studies[name] = _evaluated(study)
    pooled = np.concatenate([_losses(ts) for ts in studies.values()])
    ideal, worst = pooled.min(axis=0), pooled.max(axis=0)
    refs = {"range": worst + 0.1 * (worst - ideal),
            "wide": np.array([worst[0] + 1.0, worst[1] * 1.1])}
    boxes = {k: float(np.prod(r - ideal)) for k, r in refs.items()}
    common_n = min(len(ts) for ts in studies.values())
    tables = NasconvTables(storage)
    per_study: dict[str, dict[str, Any]] = {}
    for name, ts in studies.items():
        study = loaded[name]
        losses = _losses(ts)

        def hv(k: int, ref: str) -> float:
            return hv2d(losses[:k], refs[ref]) / boxes[ref]

        own = [s for s in tables.snapshots(name) if s.trial_number >= 0]
        trials = study.get_trials(deepcopy=False)
        statuses = [t.user_attrs.get("status") for t in trials]
        front = [ts[i] for i in _front_indices(losses[:common_n])]
        per_study[name] = {
            "sampler": study.user_attrs.get("sampler"), "seed": study.user_attrs.get("seed"),
            "evaluated": len(ts), "optuna_trials": len(trials),
            "new_evaluations": statuses.count("evaluated"), "cached": statuses.count("cached"),
            "rejected": statuses.count("rejected"),
            "failed": sum(1 for t in trials if t.state == optuna.trial.TrialState.FAIL),
            "unique_archs": len({t.user_attrs["arch_hash"] for t in ts[:common_n]}),
            "hv": hv(common_n, "range"), "hv_wide": hv(common_n, "wide"),
            "hv_all_trials": hv(len(ts), "range"),
            "curve": {k: hv(k, "range") for k in range(CURVE_STEP, len(ts) + 1, CURVE_STEP)},
            "own_snapshot_hv": own[-1].hypervolume if own else None,
            "own_snapshot_n": own[-1].n_complete if own else None,
            "own_reference": study.user_attrs.get("hv_reference"),
            "front": [{"trial": t.number, "ops": t.user_attrs.get("ops"), "score": t.user_attrs["score"],
                       "latency_ms": t.user_attrs["latency_ms"], "macs": t.user_attrs["macs"]}
                      for t in sorted(front, key=lambda t: t.user_attrs["latency_ms"])],
            "best_score": float(-losses[:common_n, 0].min()), "best_latency_ms": float(losses[:common_n, 1].min()),
        }
    tables.dispose()
    return {"eval_config": next(iter(loaded.values())).user_attrs.get("eval_config"),
            "references": {k: [float(-r[0]), float(r[1])] for k, r in refs.items()},
            "ideal": [float(-ideal[0]), float(ideal[1])], "boxes": boxes, "common_n": common_n,
            "n_points": int(len(pooled)),
            # the best front known: every evaluated trial of every study together
            "pooled_hv": hv2d(pooled, refs["range"]) / boxes["range"],
            "n_unique": len({t.user_attrs["arch_hash"] for ts in studies.values() for t in ts}),
            "score_range": [float(-worst[0]), float(-ideal[0])],
            "latency_range_ms": [float(ideal[1]), float(worst[1])],
            "studies": per_study}


def _front_indices(losses: np.ndarray) -> list[int]:
    out = []
    for i, p in enumerate(losses):
        dominated = ((losses <= p).all(axis=1) & (losses < p).any(axis=1)).any()
        if not dominated:
            out.append(i)
    return out


ALPHA = 0.05


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (no ties among these float measurements)."""
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def _spread_picks(storage: str, samplers: list[str], seeds: int, attr: str,
                  n: int) -> tuple[list[tuple[dict[str, Any], float]], dict[str, Any]]:
    """``n`` distinct evaluated architectures spread evenly over their stored ``attr`` values, as
    (arch dict, stored value), and the studies' evaluation settings."""
    seen: dict[str, tuple[dict[str, Any], float]] = {}
    ev: dict[str, Any] = {}
    for sampler in samplers:
        for seed in range(seeds):
            study = _load(study_name(sampler, seed), storage)
            ev = ev or (study.user_attrs.get("eval_config") if study else None) or {}
            for t in _evaluated(study):
                seen.setdefault(t.user_attrs["arch_hash"], (t.user_attrs["arch"], float(t.user_attrs[attr])))
    if n < 2 or len(seen) < 2:
        return [], ev
    ordered = sorted(seen.values(), key=lambda v: v[1])
    return [ordered[round(i * (len(ordered) - 1) / (n - 1))] for i in range(min(n, len(ordered)))], ev


def latency_retest(storage: str, samplers: list[str], seeds: int, n: int) -> dict[str, Any] | None:
    """Measure ``n`` evaluated architectures' latency again (spread over the stored latencies), as
    ``evaluate`` does: how repeatable is the objective the samplers optimise on this machine?"""
    from nasconv.arch import ArchSpec
    from nasconv.build import build_model
    from nasconv.profile import measure_latency

    picks, ev = _spread_picks(storage, samplers, seeds, "latency_ms", n)
    if not picks:
        return None
    rows = []
    for arch_dict, stored in picks:
        arch = ArchSpec.from_dict(arch_dict)
        torch.manual_seed(ev.get("train", {}).get("seed", 0))
        lat = measure_latency(build_model(arch), in_channels=arch.in_channels,
                              resolution=ev.get("latency_resolution") or arch.resolution,
                              batch_size=ev.get("latency_batch", 1), max_time_s=ev.get("latency_max_time_s", 3.0))
        rows.append({"ops": arch.ops_label(), "stored_ms": stored, "again_ms": lat.median_ms, "load": _load_avg()})
    a = np.array([r["stored_ms"] for r in rows])
    b = np.array([r["again_ms"] for r in rows])
    rho = _spearman(a, b)
    rel = np.abs(b / a - 1.0)
    return {"n": len(rows), "spearman": rho, "median_abs_rel_diff": float(np.median(rel)),
            "max_abs_rel_diff": float(rel.max()), "rows": rows}


def score_signal(storage: str, samplers: list[str], seeds: int, n_archs: int, n_seeds: int) -> dict[str, Any] | None:
    """Is the score objective a property of the architecture? Score ``n_archs`` evaluated
    architectures (spread over the stored scores) again under ``n_seeds`` initialisation seeds and
    split the variance: between architectures vs between seeds of one architecture.

    A zero-cost score is computed on one random initialisation; if another seed moves it as much
    as another architecture does, a sampler has nothing to learn from it and every sampler's
    front on that axis is luck.
    """
    from dataclasses import replace

    from nasconv.arch import ArchSpec
    from nasconv.evaluate import evaluate

    picks, ev = _spread_picks(storage, samplers, seeds, "score", n_archs)
    if not picks or n_seeds < 2:
        return None
    cfg = replace(EvalConfig.from_dict(ev), latency=False)
    rows = []
    for arch_dict, stored in picks:
        arch = ArchSpec.from_dict(arch_dict)
        scores = [float(evaluate(arch, replace(cfg, train=replace(cfg.train, seed=cfg.train.seed + k)))["score"])
                  for k in range(n_seeds)]
        rows.append({"ops": arch.ops_label(), "stored": stored, "scores": scores})
    x = np.array([r["scores"] for r in rows])  # archs x seeds
    k = x.shape[1]
    msb = k * x.mean(axis=1).var(ddof=1)  # one-way ANOVA, architecture as the factor
    msw = x.var(axis=1, ddof=1).mean()
    icc = float((msb - msw) / (msb + (k - 1) * msw)) if msb + (k - 1) * msw > 0 else float("nan")
    rho = _spearman(x[:, 0], x[:, 1:].mean(axis=1))
    return {"n_archs": len(rows), "n_seeds": k, "icc": icc, "spearman_seed0_vs_rest": rho,
            "sd_between_arch_means": float(x.mean(axis=1).std(ddof=1)),
            "sd_within_arch": float(np.sqrt(msw)), "rows": rows}


# --- report -------------------------------------------------------------------------------


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (float("nan"), 0.0)


def summarise(an: dict[str, Any], samplers: list[str], seeds: int) -> tuple[str, dict[str, Any]]:
    n = an["common_n"]
    rows, data = [], {}
    for sampler in samplers:
        st = [an["studies"][study_name(sampler, s)] for s in range(seeds) if study_name(sampler, s) in an["studies"]]
        hv = [s["hv"] for s in st]
        wide = [s["hv_wide"] for s in st]
        own = [s["own_snapshot_hv"] for s in st if s["own_snapshot_hv"] is not None]
        m, sd = _mean_std(hv)
        mw, sdw = _mean_std(wide)
        data[sampler] = {"hv": hv, "mean": m, "std": sd, "hv_wide": wide, "mean_wide": mw, "std_wide": sdw,
                         "own_snapshot_hv": own, "best_latency_ms": [s["best_latency_ms"] for s in st],
                         "best_score": [s["best_score"] for s in st],
                         "curve": {k: statistics.mean(s["curve"][k] for s in st)
                                   for k in sorted(set.intersection(*(set(s["curve"]) for s in st)))},
                         "evaluated": [s["evaluated"] for s in st], "cached": [s["cached"] for s in st],
                         "new_evaluations": [s["new_evaluations"] for s in st],
                         "rejected": [s["rejected"] for s in st], "unique_archs": [s["unique_archs"] for s in st],
                         "front_sizes": [len(s["front"]) for s in st]}
        rows.append(sampler)
    rnd = data.get("random")
    verdict = []
    if rnd:
        for sampler in samplers:
            if sampler == "random":
                continue
            d = data[sampler]
            diff = d["mean"] - rnd["mean"]
            wins = sum(1 for a in d["hv"] for b in rnd["hv"] if a > b)
            pairs = len(d["hv"]) * len(rnd["hv"])
            every = diff > 0 and min(d["hv"]) > max(rnd["hv"])
            p_value = mann_whitney_p(d["hv"], rnd["hv"])
            data[sampler]["vs_random"] = {"diff": diff, "pairwise_wins": wins, "pairs": pairs,
                                          "every_seed_above_every_random_seed": every,
                                          "mann_whitney_p": p_value, "clearly_above": p_value <= ALPHA,
                                          "diff_in_random_stds": diff / rnd["std"] if rnd["std"] else None}
            verdict.append(
                f"- {sampler} vs random: mean {d['mean']:.4f} vs {rnd['mean']:.4f} ({diff:+.4f}; "
                + (f"{diff / rnd['std']:+.1f} random std; " if rnd["std"] else "")
                + f"beats a random seed in {wins}/{pairs} seed pairs, one-sided exact Mann-Whitney p = {p_value:.3f}; "
                f"every {sampler} seed above every random seed: {'yes' if every else 'no'}).")
        clearly = [s for s in samplers if s != "random" and data[s]["vs_random"]["clearly_above"]]
        goal = len(clearly) == len([s for s in samplers if s != "random"])
        if an.get("pooled_hv"):
            verdict.append(
                f"- Headroom: the front of all {an['n_points']} evaluated trials pooled ({an['n_unique']} distinct "
                f"architectures) has HV {an['pooled_hv']:.4f}; at {n} trials the samplers' mean HV is "
                + ", ".join(f"{s} {data[s]['mean'] / an['pooled_hv'] * 100:.0f}%" for s in samplers)
                + " of it, so the spread between samplers is what is left to win.")
        verdict.insert(0, f"- Goal \"nsga2 and tpe clearly above random\" (read as: the sampler's {n}-trial HVs "
                          f"are above random's by a one-sided exact Mann-Whitney test at p <= {ALPHA}, over the seeds; "
                          f"with 3 seeds each the smallest possible p is 0.05): "
                          f"**{'holds' if goal else 'does not hold'}**"
                          + ("" if goal else f" (clearly above: {', '.join(clearly) or 'none'})") + ".")
    per_seed = ", ".join(f"s{i}" for i in range(seeds))
    lines = [f"| sampler | HV mean | HV std | HV per seed ({per_seed}) | HV, wide ref: mean (std) | wide ref per seed "
             "| own snapshot HV per seed | best latency ms per seed | best score per seed |",
             "|---|---:|---:|---|---:|---|---|---|---|"]
    for sampler in rows:
        d = data[sampler]
        lines.append(f"| {sampler} | {d['mean']:.4f} | {d['std']:.4f} | {', '.join(f'{v:.4f}' for v in d['hv'])} | "
                     f"{d['mean_wide']:.4f} ({d['std_wide']:.4f}) | {', '.join(f'{v:.4f}' for v in d['hv_wide'])} | "
                     f"{', '.join(f'{v:.4g}' for v in d['own_snapshot_hv'])} | "
                     f"{', '.join(f'{v:.0f}' for v in d['best_latency_ms'])} | "
                     f"{', '.join(f'{v:.4f}' for v in d['best_score'])} |")
    ks = sorted(set.intersection(*(set(data[s]["curve"]) for s in samplers)))
    curve = ["| evaluated trials | " + " | ".join(samplers) + " |", "|---:|" + "---:|" * len(samplers)]
    for k in ks:
        curve.append(f"| {k} | " + " | ".join(f"{data[s]['curve'][k]:.4f}" for s in samplers) + " |")
    counts = ["| sampler | evaluated | new evaluations | served by the cache | rejected (over budget) | "
              "unique architectures | front size |", "|---|---|---|---|---|---|---|"]
    for s in samplers:
        d = data[s]
        counts.append(" | ".join([f"| {s}"] + [", ".join(map(str, d[k])) for k in (
            "evaluated", "new_evaluations", "cached", "rejected", "unique_archs", "front_sizes")]) + " |")
    text = "\n".join(
        [f"### Hypervolume at {n} evaluated trials (common reference, normalised)", ""] + lines + ["", *verdict, "",
         "### Hypervolume vs evaluated trials (mean over seeds)", ""] + curve + ["",
         "### Trial counts per seed (s0, s1, ...)", ""] + counts)
    return text, data


def retest_text(r: dict[str, Any]) -> str:
    lines = [f"### Latency repeatability: {r['n']} evaluated architectures (spread over the stored latencies) "
             "measured again after the searches", "",
             f"Spearman rank correlation stored vs again: {r['spearman']:.2f}; |again / stored - 1|: median "
             f"{r['median_abs_rel_diff']:.0%}, max {r['max_abs_rel_diff']:.0%}. The picks are spread over the stored "
             "values, so the lowest and highest of them are the measurements with the most luck in them (a sampler "
             "keeps the lucky low ones on its front); a low correlation means the latency objective was mostly "
             "machine noise during the searches.", "",
             "| architecture (op per stage) | stored ms | again ms | load (1/5/15) |",
             "|---|---:|---:|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['ops'].replace('|', '/')} | {row['stored_ms']:.1f} | {row['again_ms']:.1f} | "
                     f"{row['load']} |")
    return "\n".join(lines)


def signal_text(r: dict[str, Any]) -> str:
    lines = [f"### Score signal: {r['n_archs']} evaluated architectures (spread over the stored scores) scored again "
             f"under {r['n_seeds']} initialisation seeds", "",
             f"Share of the score's variance that is the architecture (intraclass correlation, one-way ANOVA): "
             f"**{r['icc']:.2f}** (1 = the score is a property of the architecture, 0 = it is initialisation noise). "
             f"SD of one architecture's score over seeds {r['sd_within_arch']:.4f}; SD between the architectures' "
             f"mean scores {r['sd_between_arch_means']:.4f}. Rank correlation of the seed-0 score (what a search "
             f"sees) with the mean of the other seeds: {r['spearman_seed0_vs_rest']:.2f}. A sampler can only learn "
             "the part of an objective that the architecture decides.", "",
             "| architecture (op per stage) | stored | score per seed |", "|---|---:|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['ops'].replace('|', '/')} | {row['stored']:.4f} | "
                     f"{', '.join(f'{v:.4f}' for v in row['scores'])} |")
    return "\n".join(lines)


def plot(data: dict[str, Any], samplers: list[str], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in samplers:
        ks = sorted(data[s]["curve"])
        ax.plot(ks, [data[s]["curve"][k] for k in ks], marker="o", label=s)
    ax.set_xlabel("evaluated trials")
    ax.set_ylabel("normalised hypervolume (mean over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --- output -------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _distinct(runs: list[dict[str, Any]], key: str) -> list[Any]:
    out: list[Any] = []
    for r in runs:
        if r.get(key) is not None and r[key] not in out:
            out.append(r[key])
    return out or ["n/a"]


def markdown(meta: dict[str, Any], an: dict[str, Any], text: str, png: bool) -> str:
    rr, rw, ideal = an["references"]["range"], an["references"]["wide"], an["ideal"]
    ev = an["eval_config"] or {}
    score_share = (an["score_range"][1] - an["score_range"][0]) / (an["ideal"][0] - rw[0])
    runs = meta["runs"]
    out = [
        "# Search quality: nsga2 vs tpe vs random",
        "",
        "Generated by `benchmarks/search_quality.py`; do not edit by hand. Searches: "
        + ", ".join(f"`{c}`" for c in _distinct(meta["all_runs"], "command")) + f"; this report: `{meta['command']}`",
        "",
        f"- searches ran {meta['all_runs'][0]['date'] if meta['all_runs'] else 'n/a'} .. "
        f"{meta['all_runs'][-1]['date'] if meta['all_runs'] else 'n/a'} (report written {meta['date']}); search wall "
        f"time {meta['all_runs_wall_s'] / 60:.0f} min over {len(meta['all_runs'])} run(s) (study x phase), "
        f"{len(runs)} of them in the invocation that wrote this report",
        f"- torch {meta['torch']}, Optuna {meta['optuna']}, Python {meta['python']}; CPU: {meta['cpu']} "
        f"({meta['cpu_count']} logical CPUs), inline runner, torch threads {ev.get('threads')}, "
        f"OMP_WAIT_POLICY={meta['omp_wait_policy']}",
        f"- load average (1/5/15 min) when the first run ended: "
        f"{meta['all_runs'][0]['load'] if meta['all_runs'] else 'n/a'}, when the last ended: "
        f"{meta['all_runs'][-1]['load'] if meta['all_runs'] else 'n/a'} (2 cores, shared with other work); 1-min load "
        f"at the end of each run (study@trials): {meta['load_per_run']}",
        f"- nasconv revision during the searches: {', '.join(_distinct(meta['all_runs'], 'git'))}; at the report: "
        f"{meta['git']}",
        f"- space `{meta['space']}`, budget `{meta['budget']}`, objectives: synflow score (max) and measured latency (min); "
        f"{meta['trials_target']} evaluated trials per study targeted, {an['common_n']} reached by every study; "
        f"studies grown in phases of {', '.join(map(str, _distinct(meta['all_runs'], 'phase')))} evaluated trials",
        f"- evaluation (as stored with the studies): synflow on the full untrained network at "
        f"{ev.get('train', {}).get('resolution')} px; latency at {ev.get('latency_resolution') or meta['resolution']} px (the "
        f"space's resolution is {meta['resolution']}), batch {ev.get('latency_batch')}, eval mode, >= 10 timed runs after 3 warm-up runs (cap "
        f"{ev.get('latency_max_time_s')} s once 10 are in), torch threads {ev.get('threads')}; storage "
        f"`{meta['storage']}` shared by all studies, so the evaluation cache is shared: an "
        "architecture is evaluated once and then has the same score and latency in every study (fairer: latency "
        "noise cannot favour a sampler)",
        "- samplers as nasconv makes them: nsga2 (population 10) and random with one categorical per stage for "
        "the operator (random: uniform over architectures), tpe (multivariate with group decomposition, 10 "
        "startup trials) with the operator's family plus a conditional hyperparameter; "
        + (f"studies of {', '.join(meta['rerun'])} deleted and run again in the invocation that wrote this report "
           f"(the other studies and the evaluation cache kept; {meta['replaced_runs']} earlier runs replaced); "
           if meta.get("rerun") else "") +
        "a study continued in a later phase is run with seed `seed * 1000003 + trials so far` (which nasconv's "
        "driver re-seeds again from the trial number), so that it does not replay its first proposals",
        f"- hypervolume (HV): the study's feasible front (evaluated + cached trials; over-budget candidates are "
        f"never evaluated) over its first {an['common_n']} evaluated trials, in (score max, latency min), against "
        f"one reference point for all studies, divided by the box between that point and the ideal point "
        f"(best score {ideal[0]:.4f}, best latency {ideal[1]:.1f} ms over all {an['n_points']} evaluated trials, "
        f"{an['n_unique']} distinct architectures), so 1.0 = one candidate best at both. HV: reference 10% of each "
        f"objective's observed range beyond its worst value: ({rr[0]:.4f}, {rr[1]:.1f} ms). HV, wide ref: "
        f"(min score - 1, max latency x 1.1) = ({rw[0]:.4f}, {rw[1]:.1f} ms): synflow scores seen span "
        f"{an['score_range'][0]:.4f} .. {an['score_range'][1]:.4f}, only {score_share:.0%} of this box's score "
        f"side, so this HV mostly measures the latency reached. Latencies seen {an['latency_range_ms'][0]:.1f} .. "
        f"{an['latency_range_ms'][1]:.1f} ms",
        "- own snapshot HV: the last front snapshot nasconv stored for the study, against the study's own "
        "reference point (fixed from its first front; not comparable across studies)",
        "",
        "## Results",
        "",
        text,
        "",
    ]
    if png:
        out += [f"![hypervolume vs trials]({meta['stem']}.png)", ""]
    out += ["### Runs", "", "| study | from -> to | wall s | cached | rejected | load (1/5/15) |",
            "|---|---|---:|---:|---:|---|"]
    for r in meta["all_runs"]:
        out.append(f"| {r['study']} | {r['from']} -> {r['to']} | {r['wall_s']:.0f} | {r['cached']} | {r['rejected']} | "
                   f"{r['load']} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60, help="evaluated trials per study (default 60)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per sampler (default 3)")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated (default nsga2,tpe,random)")
    parser.add_argument("--space", default=SPACE, help=f"search space (default {SPACE}, the issue's setting)")
    parser.add_argument("--budget", default=BUDGET, help=f"budget (default {BUDGET})")
    parser.add_argument("--storage", default=None,
                        help=f"shared storage (default {DEFAULT_STORAGE}; another space or budget: "
                             "nasconv-bench-quality-<space>-<budget>.db beside it)")
    parser.add_argument("--phase", type=int, default=20, help="grow all studies by this many trials at a time")
    parser.add_argument("--deadline-min", type=float, default=float("inf"),
                        help="start no new run after this many minutes (the report covers what is there)")
    parser.add_argument("--latency-resolution", type=int, default=None,
                        help="latency input size in px (default: the space's)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"torch threads for scoring and latency (default {THREADS}); the evaluation cache does "
                             "not key on it, so give a changed value its own --storage")
    parser.add_argument("--retest", type=int, default=12,
                        help="architectures whose latency is measured again for the report (default 12; 0: none)")
    parser.add_argument("--signal-archs", type=int, default=8,
                        help="architectures whose score is computed again under other seeds (default 8; 0: none)")
    parser.add_argument("--signal-seeds", type=int, default=4, help="seeds per architecture for that (default 4)")
    parser.add_argument("--report-only", action="store_true", help="analyse the storage, run nothing (the latency retest stored in the output JSON is kept)")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    parser.add_argument("--rerun", default="",
                        help="comma-separated samplers whose studies are deleted and run again (a sampler changed; "
                             "the other studies and the evaluation cache are kept)")
    args = parser.parse_args(argv)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    rerun = [s.strip() for s in args.rerun.split(",") if s.strip()]
    if not set(rerun) <= set(samplers) or (rerun and args.report_only):
        parser.error("--rerun takes samplers among --samplers, and not with --report-only")
    if args.trials < CURVE_STEP or args.seeds < 1 or args.phase < 1:
        parser.error("--trials must be >= 10, --seeds and --phase >= 1")
    out_dir = Path(args.out) if args.out else Path(__file__).resolve().parent / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from nasconv.spaces import load_space

    stem = "search_quality" + setting_tag(args.space, args.budget)
    storage = args.storage or default_storage(args.space, args.budget)
    db = storage.removeprefix("sqlite:///")
    log_path = Path(db + ".runs.jsonl") if storage.startswith("sqlite:///") else out_dir / f"{stem}.runs.jsonl"

    replaced = forget_studies(storage, [study_name(r, seed) for r in rerun for seed in range(args.seeds)],
                              log_path) if rerun else 0
    command = "python benchmarks/search_quality.py" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:]))
    load_before = _load_avg()
    t0 = time.perf_counter()
    runs = [] if args.report_only else run_all(args.space, args.budget, samplers, args.seeds, args.trials,
                                               args.phase, storage, args.deadline_min * 60, log_path,
                                               eval_config(args.latency_resolution, args.threads), command)
    search_wall = time.perf_counter() - t0
    all_runs = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else runs
    an = analyse(samplers, args.seeds, storage)
    text, data = summarise(an, samplers, args.seeds)
    png = plot(data, samplers, out_dir / f"{stem}.png",
               f"{args.space} at {args.budget}: synflow score vs measured latency")
    saved = out_dir / f"{stem}.json"
    old = json.loads(saved.read_text()) if args.report_only and saved.exists() else {}
    # a report rewritten later (perhaps on a busy machine) keeps the measurements taken after the searches
    retest = old.get("latency_retest") or latency_retest(storage, samplers, args.seeds, args.retest)
    signal = old.get("score_signal") or score_signal(storage, samplers, args.seeds, args.signal_archs,
                                                     args.signal_seeds)
    if signal:
        text += "\n\n" + signal_text(signal)
    if retest:
        text += "\n\n" + retest_text(retest)
    meta = {
        "date": _now(), "command": command,
        "torch": torch.__version__, "optuna": optuna.__version__, "python": platform.python_version(),
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "git": git_revision(), "storage": storage,
        "space": args.space, "budget": args.budget, "resolution": load_space(args.space).resolution, "stem": stem,
        "load_before": load_before, "load_after": _load_avg(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_per_run": "; ".join(f"{r['study']}@{r['to']}: {r['load'].split(',')[0]}" for r in all_runs) or "n/a",
        "search_wall_s": search_wall, "all_runs_wall_s": sum(r["wall_s"] for r in all_runs),
        "trials_target": args.trials, "phase": args.phase, "seeds": args.seeds, "samplers": samplers,
        "runs": runs, "all_runs": all_runs, "eval_config": an["eval_config"],
        "rerun": rerun, "replaced_runs": replaced,
    }
    print("\n" + text)
    (out_dir / f"{stem}.md").write_text(markdown(meta, an, text, png))
    saved.write_text(json.dumps({"meta": meta, "analysis": an, "summary": data, "latency_retest": retest,
                                 "score_signal": signal}, indent=1, default=str) + "\n")
    print(f"wrote {out_dir / stem}.md and .json" + (" and .png" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
