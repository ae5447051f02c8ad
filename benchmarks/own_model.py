"""Bring your own network (issue #36): the time to make a space from each shipped example model,
and the cost model's identity (analytic params and MACs == FlopCounterMode's) on random
candidates of each, at the examples' full size.

    python benchmarks/own_model.py [--candidates 50] [--repeats 3]

``--effects`` adds the seed papers' setting: VGG-16 for CIFAR on the real CIFAR-10 images, each
stage alone set to HetConv (P=4) or SPConv (ratio 1/2) against the plain baseline, each trained
``--seeds`` times by nasconv's brief-training proxy, with the accuracy difference and its 95%
interval (Welch, over seeds) beside what the articles claim; then a search at a third of the
baseline's MACs (``--budget``). On 2 CPU cores one VGG-16 proxy evaluation (8,000 images, one
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
    from scipy import stats

    ma, mb = statistics.mean(a), statistics.mean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1)) + (vb ** 2 / (len(b) - 1))) if se else 1.0
    q = stats.t.ppf(0.975, dof) if se else 0.0
    return mb - ma, mb - ma - q * se, mb - ma + q * se


def effects(space, seeds: int, data: str, device: str) -> list[dict]:
    """Each stage alone set to HetConv or SPConv, against the baseline, over ``seeds`` trainings."""
    from nasconv.arch import OpChoice
    from nasconv.evaluate import eval_config_for, evaluate

    def acc(arch, seed):
        cfg = eval_config_for(space, data=data, device=device, latency=False, seed=seed)
        return evaluate(arch, cfg)["accuracy"]

    base = [acc(space.baseline(), s) for s in range(seeds)]
    rows = []
    for i, st in enumerate(space.stages):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--effects", action="store_true", help="also the per-stage HetConv/SPConv effects on CIFAR-10")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(2)
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
        with tempfile.TemporaryDirectory() as tmp:
            write_space(vgg, Path(tmp) / "vgg16.yaml")
            eff = effects(vgg, args.seeds, args.data, args.device)
        res["effects"] = eff
        lines += ["", f"## VGG-16 on {args.data}: one stage at a time ({args.seeds} seeds each)", "",
                  "| stage | operator | MACs vs baseline | accuracy diff (95% CI) | what the article claims |",
                  "|---|---|---:|---:|---|"]
        for e in eff:
            lines.append(f"| {e['stage']} | {e['op']} | {e['macs'] / e['baseline_macs']:.3f} | "
                         f"{100 * e['diff']:+.2f} pts ({100 * e['ci95'][0]:+.2f}..{100 * e['ci95'][1]:+.2f}) | "
                         f"{CLAIMS[e['op'].split('(')[0]]} |")
    write_results(args.out, "own_model", "\n".join(lines) + "\n", res)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
