"""Report speed: ``nasconv report`` and ``nasconv pareto`` on a study with thousands of screened candidates.

    python benchmarks/report_speed.py [--space resnet50] [--screened 5000] [--trained 20] [--repeats 3]
                                      [--out benchmarks/results]

A one-shot search keeps the supernet's scores in a screen study beside the main one (thousands of
candidates) and trains a few dozen stand-alone. This builds such a pair in a fresh SQLite file
with the Optuna API, nothing trained: ``--screened`` random architectures of the space with
synthetic supernet accuracies and latencies in the screen study, and the first ``--trained`` of
them in the main study with synthetic stand-alone accuracies and their supernet accuracy
(``oneshot_accuracy``), as the search stores them. The values are synthetic (an additive stage x
family model plus noise): this measures speed, not accuracy. A main study with the same trained
candidates and no screen study is built beside it, the cost of a report without screening.

Each command runs as a user runs it (``python -m nasconv.cli ...``, a fresh process: imports included),
``--repeats`` times; the median wall time is reported with the range, the CPU model, the load
average and the CPU other processes used meanwhile (``_common.OtherCpu``). The goal the issue
sets: a report over 5,000 screened candidates in under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from _common import OtherCpu, cpu_model, git_revision, load_avg, write_results
from optuna.distributions import CategoricalDistribution

from nasconv.cost import estimate_cost
from nasconv.results.trust import screen_study_name
from nasconv.spaces import load_space
from nasconv.stats import accuracy_uncertainty
from nasconv.storage import open_storage

GOAL_REPORT_S = 30.0
VAL_IMAGES = 1000
NAME = "speed"
PLAIN = "speed-plain"


def _distributions(space: Any) -> dict[str, CategoricalDistribution]:
    out = {}
    for i, st in enumerate(space.stages):
        out[f"s{i}_op"] = CategoricalDistribution([o.label() for o in st.ops])
        if len(st.depths) > 1:
            out[f"s{i}_depth"] = CategoricalDistribution(list(st.depths))
        if len(st.widths) > 1:
            out[f"s{i}_width"] = CategoricalDistribution(list(st.widths))
    return out


def _params(arch: Any, dists: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for i, st in enumerate(arch.stages):
        for key, value in ((f"s{i}_op", st.op.label()), (f"s{i}_depth", st.depth), (f"s{i}_width", st.width)):
            if key in dists:
                out[key] = value
    return out


def _new_study(storage: Any, name: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "latency_ms"])
    return study


def _stamp(study: optuna.Study, space_name: str, latency_ref: float) -> None:
    for key, value in {"space": space_name, "budget": "none", "objectives": ["accuracy", "latency"],
                       "sampler": "tpe", "seed": 0, "hv_reference": [0.0, latency_ref],
                       "eval_config": {"proxy": "train", "data": "synthetic",
                                       "train": {"val_images": VAL_IMAGES}}}.items():
        study.set_user_attr(key, value)


def build_studies(url: str, *, space_name: str = "resnet20", screened: int = 200, trained: int = 20, seed: int = 0,
                  rho_noise: float = 0.3, effect_sd: float = 0.02, plain: bool = False) -> dict[str, Any]:
    """A main study ``speed`` and its screen study in ``url`` (and, with ``plain``, the main study
    again as ``speed-plain`` without one). The supernet accuracy is the stand-alone one's signal
    plus noise ``rho_noise`` times its spread (0: the same ranking); ``effect_sd``: the spread of
    the stage x family effects. Returns the names and counts."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_name)
    rng = random.Random(seed)
    effect = {(s, o.name): rng.gauss(0, effect_sd) for s, st in enumerate(space.stages) for o in st.ops}
    storage, tables = open_storage(url, heartbeat=False)
    tables.dispose()
    dists = _distributions(space)
    archs, seen = [], set()
    while len(archs) < screened:
        a = space.sample(rng)
        if a.arch_hash not in seen:
            seen.add(a.arch_hash)
            archs.append(a)
    def signal_of(a: Any) -> float:
        return 0.6 + sum(effect[(s, st.op.name)] + 0.003 * st.depth for s, st in enumerate(a.stages))

    rows = []
    for a in archs:
        signal = signal_of(a)
        latency = 0.2 * sum(st.depth * st.width for st in a.stages) / len(a.stages) * (1 + rng.gauss(0, 0.05))
        oneshot = min(max(signal - 0.2 + rho_noise * 0.04 * rng.gauss(0, 1), 0.0), 1.0)
        rows.append((a, signal, max(latency, 0.01), oneshot))
    latency_ref = 2 * max(r[2] for r in rows)
    screen = _new_study(storage, screen_study_name(NAME))
    _stamp(screen, space_name, latency_ref)
    screen.add_trials([optuna.trial.create_trial(
        params=_params(a, dists), distributions={k: dists[k] for k in _params(a, dists)}, values=[one, lat],
        user_attrs={"fidelity": "oneshot", "arch_hash": a.arch_hash, "accuracy": one, "score": one, "latency_ms": lat,
                    "latency_source": "synthetic", **accuracy_uncertainty(one, VAL_IMAGES)})
        for a, _sig, lat, one in rows])
    numbers = {t.user_attrs["arch_hash"]: t.number for t in screen.get_trials(deepcopy=False)}
    names = [NAME] + ([PLAIN] if plain else [])
    for name in names:
        main = _new_study(storage, name)
        _stamp(main, space_name, latency_ref)
        base = estimate_cost(space.baseline())
        acc = signal_of(space.baseline())
        main.set_user_attr("baseline", {"accuracy": acc, "score": acc, "latency_ms": latency_ref / 4,
                                        "status": "evaluated", "macs": base.macs, "params": base.params,
                                        **accuracy_uncertainty(acc, VAL_IMAGES)})
        trials = []
        for a, sig, lat, one in rows[:trained]:
            acc = min(max(sig + rng.gauss(0, 0.01), 0.0), 1.0)
            cost = estimate_cost(a)
            attrs = {"status": "evaluated", "arch": a.to_dict(), "arch_hash": a.arch_hash, "ops": a.ops_label(),
                     "macs": cost.macs, "params": cost.params,
                     "accuracy": acc, "score": acc, **accuracy_uncertainty(acc, VAL_IMAGES), "latency_ms": lat,
                     "latency_ci_ms": [lat * 0.97, lat * 1.03], "rung": 0}
            if name == NAME:
                attrs.update(oneshot_accuracy=one, oneshot_accuracy_ci=accuracy_uncertainty(one, VAL_IMAGES)[
                    "accuracy_ci"], screen_trial=numbers[a.arch_hash])
            p = _params(a, dists)
            trials.append(optuna.trial.create_trial(params=p, distributions={k: dists[k] for k in p},
                                                    values=[acc, lat], user_attrs=attrs))
        main.add_trials(trials)
    return {"study": NAME, "plain": PLAIN if plain else None, "screened": screened, "trained": trained}


def _time(cmd: list[str], other: OtherCpu) -> tuple[float, float]:
    other.lap()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return wall, other.lap()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="resnet50")
    ap.add_argument("--screened", type=int, default=5000)
    ap.add_argument("--trained", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--db", default=None, metavar="FILE.db",
                    help="build the studies in this SQLite file, or time the ones already there (same settings)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "speed.db"
        url = f"sqlite:///{db}"
        t0 = time.perf_counter()
        reused = db.exists()
        built = {"study": NAME, "plain": PLAIN, "screened": args.screened, "trained": args.trained} if reused else \
            build_studies(url, space_name=args.space, screened=args.screened, trained=args.trained, plain=True)
        build_s = time.perf_counter() - t0
        print(f"built {args.screened} screened + {args.trained} trained candidates in {build_s:.0f} s", flush=True)
        other = OtherCpu()
        py = [sys.executable, "-m", "nasconv.cli"]
        cases = {
            "report (5,000 screened)": py + ["report", "--study", NAME, "--storage", url, "--out",
                                             f"{tmp}/r.html", "--json", "--no-attach", "--force"],
            "pareto (5,000 screened)": py + ["pareto", "--study", NAME, "--storage", url],
            "pareto --json (5,000 screened)": py + ["pareto", "--study", NAME, "--storage", url, "--json"],
            "report (no screening)": py + ["report", "--study", PLAIN, "--storage", url, "--out", f"{tmp}/p.html",
                                           "--json", "--no-attach", "--force"],
            "pareto (no screening)": py + ["pareto", "--study", PLAIN, "--storage", url],
        }
        results = []
        for label, cmd in cases.items():
            label = label.replace("5,000", f"{args.screened:,}")
            runs = [_time(cmd, other) for _ in range(args.repeats)]
            walls = [r[0] for r in runs]
            results.append({"command": label, "argv": shlex.join(["nasconv"] + cmd[3:]).replace(tmp, "TMP").replace(str(db), "DB"),
                            "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
                            "runs_s": walls, "other_cpu_cores": [r[1] for r in runs]})
            print(f"{label}: median {statistics.median(walls):.1f} s (range {min(walls):.1f}-{max(walls):.1f})",
                  flush=True)
    report_s = results[0]["median_s"]
    others = [c for r in results for c in r["other_cpu_cores"] if not math.isnan(c)]
    meta = {"date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cores": os.cpu_count(),
            "revision": git_revision(), "python": sys.version.split()[0], "optuna": optuna.__version__,
            "load_avg_end": load_avg(), "other_cpu_mean": statistics.fmean(others) if others else None,
            "command": "python benchmarks/report_speed.py" + (" " + shlex.join(argv or sys.argv[1:]) if (
                argv or sys.argv[1:]) else ""),
            "space": args.space, "screened": args.screened, "trained": args.trained, "repeats": args.repeats,
            "build_s": None if reused else build_s}
    goal = {"report_under_s": GOAL_REPORT_S, "report_median_s": report_s, "met": report_s < GOAL_REPORT_S}
    write_results(args.out, "report_speed", markdown(meta, results, goal), {"meta": meta, "goal": goal,
                                                                           "results": results, "built": built})
    print(f"goal (report under {GOAL_REPORT_S:.0f} s): {'met' if goal['met'] else 'NOT met'} ({report_s:.1f} s)")
    return 0


def markdown(meta: dict[str, Any], results: list[dict[str, Any]], goal: dict[str, Any]) -> str:
    other = meta["other_cpu_mean"]
    out = [
        "# Report speed on a study with screened candidates",
        "",
        f"Generated by `benchmarks/report_speed.py`; do not edit by hand. Command: `{meta['command']}`",
        "",
        f"- Machine: {meta['cpu']}, {meta['cores']} cores; Python {meta['python']}, Optuna {meta['optuna']}; "
        f"revision {meta['revision']}; {meta['date']}.",
        f"- Load: load average at the end {meta['load_avg_end']}; other processes used "
        + (f"{other:.2f} cores on average while the commands ran" if other is not None else "an unknown share")
        + " (a background benchmark may share the machine: the times are then upper bounds).",
        f"- Study: space {meta['space']}, {meta['screened']:,} screened candidates (the screen study) and "
        f"{meta['trained']} trained stand-alone (the main study), in one SQLite file, built with the Optuna API"
        + (f" in {meta['build_s']:.0f} s" if meta["build_s"] is not None else "") + ". Synthetic values: this measures "
        "speed, not accuracy.",
        f"- Each command in a fresh process (`python -m nasconv.cli ...`, imports included), {meta['repeats']} times: "
        "the median and the range of the wall times.",
        "- What the report does over the screened candidates: reads them, fits the stage x family effects "
        "(accuracy and latency) beside the stand-alone fit. Parameter importance (PED-ANOVA, refitted per "
        "bootstrap resample, cost linear in the trials) is computed over the stand-alone candidates only, and "
        "the report says so. `pareto` counts the screened candidates without reading them.",
        "",
        "| command | median s | range s | other CPU (cores, per run) |",
        "|---|---:|---:|---|",
    ]
    for r in results:
        oc = ", ".join("n/a" if math.isnan(c) else f"{c:.2f}" for c in r["other_cpu_cores"])
        out.append(f"| `{r['command']}` | {r['median_s']:.1f} | {r['min_s']:.1f}-{r['max_s']:.1f} | {oc} |")
    out += ["", f"Goal: a report over {meta['screened']:,} screened candidates in under {goal['report_under_s']:.0f} s "
                f"on 2 cores: **{'met' if goal['met'] else 'not met'}** (median {goal['report_median_s']:.1f} s).", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
