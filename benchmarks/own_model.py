"""Bring your own network (issue #36): the time to make a space from each shipped example model,
and the cost model's identity (analytic params and MACs == FlopCounterMode's) on random
candidates of each, at the examples' full size.

    python benchmarks/own_model.py [--candidates 50] [--repeats 3]
    python benchmarks/own_model.py --effects [--budget 1/3] [--trials 20]   # hours on 2 CPU cores
    python benchmarks/own_model.py --effects --quick                         # a smoke run, under a minute

``--effects`` adds the seed papers' setting: VGG-16 for CIFAR on the real CIFAR-10 images, each
stage alone set to HetConv (P=4) or SPConv (ratio 1/2) against the plain baseline, each trained
``--seeds`` times by nasconv's brief-training proxy, with the accuracy difference and its 95%
interval (Welch, over seeds) beside what the articles claim; then a search of VGG-16's stages at
about a third of the baseline's MACs (``--budget``: a fraction of the baseline's MACs, or any
budget nasconv reads, e.g. ``105mmacs``), its front set beside the baseline with intervals.
``--quick`` runs the same code on VGG-16 at 1/8 width on synthetic data, a few images and trials
(it shows the wiring works; its figures mean nothing) and writes to a temporary folder. On 2 CPU cores one VGG-16 proxy evaluation (8,000 images, one
epoch) takes about 2-3 minutes: 5 stages x 2 operators x 3 seeds + 3 baselines = 33 evaluations,
about 1.5 hours, plus the search (20 trials, about 1 hour). On one H100/H200 (the space's GPU
proxy: 40,000 images, 20 epochs) about a minute each: some 55 minutes in all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_model, git_revision, load_avg, write_results  # noqa: E402

from nasconv.build import build_model  # noqa: E402
from nasconv.cost import estimate_cost  # noqa: E402
from nasconv.custom import space_from_model, write_space  # noqa: E402
from nasconv.custom.cost import profile  # noqa: E402
from nasconv.flops import measure_cost  # noqa: E402

#: the shipped examples at their full size (as a user would run them)
EXAMPLES = {
    "vgg16-cifar": ("examples/vgg.py:vgg16_cifar", {}),
    "mobilenetv2-cifar": ("examples/mobilenetv2.py:mobilenetv2_cifar", {}),
    "small-unet": ("examples/unet.py:small_unet", {}),
    "densenet-small": ("examples/densenet.py:densenet_small", {}),
    "loop-net": ("examples/reuse.py:loop_net", {}),
}

#: what the seed articles claim for the operators this benchmark sets per stage (../shared/seeds/)
CLAIMS = {
    "hetconv": "HetConv (002): higher accuracy than the standard convolution at fewer FLOPs on CIFAR-10 with "
               "VGG-16, ResNet and MobileNet",
    "spconv": "SPConv (003): on CIFAR-10 ResNet-18 a re-run saw a small accuracy drop for its FLOPs saving",
}


def make_spaces(repeats: int) -> list[dict]:
    rows = []
    for name, (ref, kwargs) in EXAMPLES.items():
        times = []
        for _ in range(repeats):
            profile.cache_clear()
            t0 = time.perf_counter()
            space = space_from_model(str(ROOT / ref), (3, 32, 32), kwargs=kwargs, name=name)
            times.append(time.perf_counter() - t0)
        rows.append({"example": name, "factory": ref, "space": space, "make_s": times,
                     "slots": len(space.slots), "fixed": len(space.fixed), "stages": len(space.stages),
                     "architectures": space.size})
    return rows


def identity(space, n: int, seed: int) -> dict:
    rng = random.Random(seed)
    archs = [space.baseline()] + [space.sample(rng) for _ in range(n - 1)]
    equal, mismatches, analytic_s, measured_s = 0, [], [], []
    for arch in archs:
        t0 = time.perf_counter()
        est = estimate_cost(arch)
        t1 = time.perf_counter()
        got = measure_cost(build_model(arch), space.input_shape)
        t2 = time.perf_counter()
        analytic_s.append(t1 - t0)
        measured_s.append(t2 - t1)
        if (est.params, est.macs) == (got.params, got.macs):
            equal += 1
        else:
            mismatches.append({"ops": arch.ops_label(), "analytic": [est.params, est.macs],
                               "measured": [got.params, got.macs]})
    return {"candidates": len(archs), "equal": equal, "mismatches": mismatches,
            "analytic_ms_median": 1e3 * statistics.median(analytic_s),
            "measured_ms_median": 1e3 * statistics.median(measured_s)}


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean difference b - a and its 95% interval (Welch; t quantile for small samples)."""
    from nasconv.stats import t975

    ma, mb = statistics.mean(a), statistics.mean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1)) + (vb ** 2 / (len(b) - 1))) if se else 1.0
    q = t975(max(1, int(dof))) if se else 0.0  # Welch's dof rounded down: the wider interval
    return mb - ma, mb - ma - q * se, mb - ma + q * se


def effects(space, seeds: int, data: str, device: str, stages: int | None = None, **train: int) -> list[dict]:
    """Each stage alone set to HetConv or SPConv, against the baseline, over ``seeds`` trainings."""
    from nasconv.arch import OpChoice
    from nasconv.evaluate import eval_config_for, evaluate

    def acc(arch, seed):
        cfg = eval_config_for(space, data=data, device=device, latency=False, seed=seed, **train)
        return evaluate(arch, cfg)["accuracy"]

    base = [acc(space.baseline(), s) for s in range(seeds)]
    rows = []
    for i, st in enumerate(space.stages[:stages]):
        for op in (OpChoice.make("hetconv", {"part": 4}), OpChoice.make("spconv", {"ratio": 0.5})):
            if op not in st.ops:
                continue
            ops = [OpChoice.make("standard")] * len(space.stages)
            ops[i] = op
            arch = space.make_arch(ops)
            got = [acc(arch, s) for s in range(seeds)]
            d, lo, hi = welch(base, got)
            rows.append({"stage": st.name, "op": op.label(), "macs": estimate_cost(arch).macs,
                         "baseline_macs": estimate_cost(space.baseline()).macs, "accuracy": got,
                         "baseline_accuracy": base, "diff": d, "ci95": [lo, hi]})
    return rows


def effects_search(space, space_file: Path, budget: str, trials: int, data: str, device: str, storage: str,
                   **train: int) -> dict:
    """A search of ``space``'s stages (objectives accuracy and MACs) under ``budget``: its front
    beside the baseline, with each accuracy's standard error."""
    from nasconv.budget import parse_budget
    from nasconv.evaluate import eval_config_for
    from nasconv.search import SearchConfig, run_search

    base_macs = estimate_cost(space.baseline()).macs
    if budget.replace(".", "", 1).replace("/", "", 1).isdigit():  # a fraction of the baseline's MACs
        num, _, den = budget.partition("/")
        budget = f"{int(base_macs * float(num) / float(den or 1))}macs"
    parse_budget(budget)  # a malformed --budget: one line before hours of training
    cfg = SearchConfig(space=str(space_file), budget=budget, trials=trials, objectives=("accuracy", "macs"),
                       storage=storage, runner="inline", progress=False, seed=0,
                       eval=eval_config_for(space, data=data, device=device, latency=False, **train))
    t0 = time.perf_counter()
    res = run_search(cfg)
    front = [{"ops": " | ".join(s["op"] + (f"({','.join(f'{k}={v}' for k, v in s['hyper'].items())})"
                                           if s["hyper"] else "") for s in t["arch"]["stages"]),
              "macs": t["macs"], "macs_vs_baseline": t["macs"] / base_macs, "accuracy": t["accuracy"],
              "accuracy_se": t.get("accuracy_se")} for t in res.front]
    base = res.baseline or {}
    return {"budget": budget, "trials": trials, "evaluated": res.evaluated, "rejected": res.rejected,
            "failed": res.failed, "study": res.study_name, "storage": storage, "baseline_macs": base_macs,
            "baseline_accuracy": base.get("accuracy"), "baseline_accuracy_se": base.get("accuracy_se"),
            "front": front, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--effects", action="store_true", help="also the per-stage HetConv/SPConv effects on CIFAR-10")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--budget", default="1/3", help="the effects search's budget: a fraction of VGG-16's MACs "
                                                    "(default 1/3) or a nasconv budget (105mmacs)")
    ap.add_argument("--trials", type=int, default=20, help="trials of the effects search")
    ap.add_argument("--quick", action="store_true", help="a smoke run (small models, synthetic data, a temp folder)")
    ap.add_argument("--out", default=None, help="where results go (default benchmarks/results; --quick: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tmp = tempfile.TemporaryDirectory()
    train: dict = {}
    if args.quick:  # the whole path on small things: VGG-16 at 1/8 width, synthetic images, few of them
        EXAMPLES.update({"vgg16-cifar": ("examples/vgg.py:vgg16_cifar", {"width": 0.125})})
        for k in ("mobilenetv2-cifar", "small-unet", "densenet-small"):
            EXAMPLES.pop(k)
        args.candidates, args.repeats, args.seeds, args.trials = 3, 1, 2, 2
        args.data, args.device = "synthetic", "cpu"
        train = {"train_images": 64, "val_images": 32, "batch_size": 32}
    out_dir = args.out or (tmp.name if args.quick else "benchmarks/results")
    started = dt.datetime.now(dt.timezone.utc)
    rows = make_spaces(args.repeats)
    for r in rows:
        r["identity"] = identity(r["space"], args.candidates, seed=0)
    res = {"date": started.isoformat(timespec="seconds"), "revision": git_revision(), "cpu": cpu_model(),
           "threads": 2, "python": platform.python_version(), "torch": torch.__version__, "load_avg": load_avg(),
           "candidates": args.candidates, "repeats": args.repeats,
           "examples": [{k: v for k, v in r.items() if k != "space"} for r in rows]}
    lines = ["# Bring your own network: spaces from the shipped examples", "",
             f"{started:%Y-%m-%d %H:%M} UTC, revision {res['revision']}, {res['cpu']}, 2 torch threads, "
             f"load average at the end {load_avg()} (a shared machine: times are upper bounds).", "",
             "Time to make a space (`space_from_model`: build the model twice, run it once with hooks and "
             f"FlopCounterMode, check every operator setting on every slot), {args.repeats} runs each "
             "(median, min..max); cost identity: analytic params and MACs equal to FlopCounterMode's on the "
             f"baseline and {args.candidates - 1} random candidates per example, with the time of each "
             "(median; the analytic one after the space's single measured run).", "",
             "| example | slots | fixed | stages | architectures | make space s (min..max) | identical | "
             "analytic ms | measured ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t = r["make_s"]
        idn = r["identity"]
        lines.append(f"| {r['example']} | {r['slots']} | {r['fixed']} | {r['stages']} | {r['architectures']:.3g} | "
                     f"{statistics.median(t):.2f} ({min(t):.2f}..{max(t):.2f}) | {idn['equal']}/{idn['candidates']} | "
                     f"{idn['analytic_ms_median']:.2f} | {idn['measured_ms_median']:.0f} |")
    if args.effects:
        vgg = next(r["space"] for r in rows if r["example"] == "vgg16-cifar")
        space_file = write_space(vgg, Path(tmp.name) / "vgg16.yaml")
        eff = effects(vgg, args.seeds, args.data, args.device, 1 if args.quick else None, **train)
        res["effects"] = eff
        lines += ["", f"## VGG-16 on {args.data}: one stage at a time ({args.seeds} seeds each)", "",
                  "| stage | operator | MACs vs baseline | accuracy diff (95% CI) | what the article claims |",
                  "|---|---|---:|---:|---|"]
        for e in eff:
            lines.append(f"| {e['stage']} | {e['op']} | {e['macs'] / e['baseline_macs']:.3f} | "
                         f"{100 * e['diff']:+.2f} pts ({100 * e['ci95'][0]:+.2f}..{100 * e['ci95'][1]:+.2f}) | "
                         f"{CLAIMS[e['op'].split('(')[0]]} |")
        storage = f"sqlite:///{Path(out_dir).resolve() / 'own_model_effects.db'}"
        srch = effects_search(vgg, space_file, args.budget, args.trials, args.data, args.device, storage, **train)
        res["effects_search"] = srch
        bse = srch["baseline_accuracy_se"]
        lines += ["", f"## VGG-16 on {args.data}: a search of its stages at {srch['budget']} (about "
                      f"{args.budget} of its {srch['baseline_macs']:,} MACs), {srch['trials']} trials", "",
                  f"{srch['evaluated']} evaluated, {srch['rejected']} over budget (not trained), {srch['failed']} "
                  f"failed, {srch['seconds'] / 60:.0f} min; the baseline's accuracy "
                  + (f"{srch['baseline_accuracy']:.4f} +- {bse:.4f} (SE)" if bse is not None else "not measured")
                  + f". Report: `nasconv report --storage {storage} --study {srch['study']}`.", "",
                  "| front member (per stage) | MACs vs baseline | accuracy +- SE |", "|---|---:|---:|"]
        for f in srch["front"]:
            se = f"{f['accuracy_se']:.4f}" if f["accuracy_se"] is not None else "?"
            lines.append(f"| {f['ops']} | {f['macs_vs_baseline']:.3f} | {f['accuracy']:.4f} +- {se} |")
    write_results(out_dir, "own_model", "\n".join(lines) + "\n", res)
    tmp.cleanup()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
