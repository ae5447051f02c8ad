"""Precision fidelity: does bf16 brief training rank architectures as fp32 does, and is it faster?

    python benchmarks/precision_fidelity.py [--spaces resnet20,resnet18,resnet50] [--n 12] [--seed 0]
                                            [--threads 2] [--data fashion-mnist] [--quick] [--fresh] [--out DIR]

For each space, ``--n`` distinct architectures (the first n distinct samples of
``space.sample(random.Random(seed))``) are trained with the space's default proxy
(``TrainConfig()`` with the space's ``proxy`` settings, as the CLI does) twice: in fp32 and in
bf16 (``torch.autocast``; ``nasconv.train.train_candidate(..., allow_emulated=True)``: on a CPU
without native bf16 instructions torch emulates bf16, and the report says which the CPU has). The
two trainings of an architecture run one after the other, fp32 first for even sample indices and
bf16 first for odd ones, so that a drift of the machine's load falls on both alike.

Each architecture is also trained a third time in fp32 with the next seed (run ``fp32-seed+1``):
two fp32 trainings differ by their seed alone, and bf16 changes an architecture's result as a new
seed does (the sums round differently from the first step on), so the rho of fp32 against its own
re-run is the ceiling that the noise of the proxy leaves for bf16's rho (with few candidates
spread over a few standard errors of accuracy, no precision can reach a rho of 0.9 that fp32
does not reach against itself). ``--no-rerun`` leaves it out.

Per space: Spearman's rho of the bf16 accuracies against the fp32 ones (average ranks for ties)
with a bootstrap 95% interval (architectures resampled), the same for the fp32 re-run, the mean absolute accuracy difference,
the median time per candidate of each precision (``train_time_s``: training and validation) with
its distribution-free 95% interval (``nasconv.stats.median_interval``), and the speed-up: the
median of the per-architecture fp32/bf16 time ratios, with the same interval. The issue's goal
(#19): a speed-up of at least 1.5 with rho at least 0.9; the result decides whether
``--precision auto`` picks bf16 on a CPU with native bf16 (``nasconv.precision.AUTO_BF16_ON_CPU``).

Every finished training is appended to ``precision_fidelity-evals.jsonl`` in the output folder; a
re-run skips each one stored there with the same space, architecture, precision, training
settings, data and thread count, so an interrupted run continues where it stopped (``--fresh``
starts the file anew). ``--quick`` is a smoke run (2 architectures of resnet20, 4 steps of 32
images at 16 px, 64 validation images) that writes files only when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import OtherCpu, cpu_model, git_revision, load_avg, write_atomic
from proxy_fidelity import bootstrap_rho, rankdata, sample_archs, spearman  # noqa: F401 (rankdata: tests)

from nasconv.data import load_dataset
from nasconv.precision import NATIVE_CPU_FLAGS, host_cpu_flags, native_precision
from nasconv.spaces import load_space
from nasconv.stats import median_interval
from nasconv.train import TrainConfig, train_candidate

PRECISIONS = ("fp32", "bf16")
#: the trainings of each architecture: name -> (precision, seed offset); the re-run is the noise ceiling
RUNS = {"fp32": ("fp32", 0), "bf16": ("bf16", 0), "fp32-seed+1": ("fp32", 1)}
RERUN = "fp32-seed+1"
SPACES = ("resnet20", "resnet18", "resnet50")
#: the issue's goal for bf16: at least this speed-up, ranking at least this close to fp32's
TARGET_SPEEDUP, TARGET_RHO = 1.5, 0.9
BOOTSTRAP_RESAMPLES = 2000
JSON_NAME, MD_NAME, EVALS_NAME = "precision_fidelity.json", "precision_fidelity.md", "precision_fidelity-evals.jsonl"
QUICK_TRAIN = {"train_images": 128, "val_images": 64, "batch_size": 32, "resolution": 16}


# --- settings and stored evaluations --------------------------------------------------------


def train_config(space_name: str, precision: str, quick: bool, seed_offset: int = 0) -> TrainConfig:
    """The space's default proxy (the CLI's: ``TrainConfig()`` with the space's proxy settings)."""
    base = dataclasses.replace(TrainConfig(), **load_space(space_name).proxy_settings, precision=precision)
    base = dataclasses.replace(base, seed=base.seed + seed_offset)
    return dataclasses.replace(base, **QUICK_TRAIN) if quick else base


def settings_hash(cfg: TrainConfig, data: str, threads: int) -> str:
    text = json.dumps({"train": cfg.to_dict(), "data": data, "threads": threads}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_evals(path: Path) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Stored evaluations by (space, arch_hash, run, settings hash); a torn last line (a run
    killed while writing it) is left out."""
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[(r["space"], r["arch_hash"], r.get("run", r["precision"]), r["settings_hash"])] = r
    return out


def run_one(space_name: str, index: int, arch: Any, ds: Any, cfg: TrainConfig, key: str,
            other: OtherCpu, run: str) -> dict[str, Any]:
    other.lap()
    cpu0, t0 = time.process_time(), time.perf_counter()
    res = train_candidate(arch, ds, cfg, allow_emulated=True)
    return {
        "space": space_name, "index": index, "arch_hash": arch.arch_hash, "ops": arch.ops_label(),
        "run": run, "precision": res.precision, "seed": cfg.seed, "settings_hash": key, "accuracy": res.accuracy, "val_loss": res.val_loss,
        "train_loss": res.train_loss, "diverged": res.diverged, "diverged_step": res.diverged_step,
        "steps": res.steps, "train_time_s": res.train_time_s, "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0, "other_cpu_cores": other.lap(), "load1": os.getloadavg()[0],
        "finished": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


# --- summary --------------------------------------------------------------------------------


def summarize(space: str, pairs: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """``pairs``: per architecture, precision -> its evaluation (only architectures with both)."""
    out: dict[str, Any] = {"space": space, "n": len(pairs)}
    if not pairs:
        return out
    acc = {p: [r[p]["accuracy"] for r in pairs] for p in PRECISIONS}
    times = {p: [r[p]["train_time_s"] for r in pairs] for p in PRECISIONS}
    ratios = [r["fp32"]["train_time_s"] / r["bf16"]["train_time_s"] for r in pairs]
    for p in PRECISIONS:
        out[f"{p}_time_s"] = statistics.median(times[p])
        out[f"{p}_time_ci95_s"] = list(median_interval(times[p]))
        out[f"{p}_mean_accuracy"] = statistics.fmean(acc[p])
        out[f"{p}_diverged"] = sum(1 for r in pairs if r[p]["diverged"])
    out["speedup"] = statistics.median(ratios)
    out["speedup_ci95"] = list(median_interval(ratios))
    out["mean_abs_accuracy_diff"] = statistics.fmean(abs(x - y) for x, y in zip(acc["fp32"], acc["bf16"]))
    if len(pairs) >= 2:
        out["spearman_rho"] = spearman(acc["fp32"], acc["bf16"])
        out["rho_ci95"] = list(bootstrap_rho(acc["fp32"], acc["bf16"]))
    reruns = [r for r in pairs if RERUN in r]
    if len(reruns) == len(pairs) and len(pairs) >= 2:  # the noise ceiling: fp32 against its own next seed
        again = [r[RERUN]["accuracy"] for r in pairs]
        out["rerun_rho"] = spearman(acc["fp32"], again)
        out["rerun_rho_ci95"] = list(bootstrap_rho(acc["fp32"], again))
        out["rerun_mean_abs_accuracy_diff"] = statistics.fmean(abs(x - y) for x, y in zip(acc["fp32"], again))
    rho = out.get("spearman_rho", float("nan"))
    out["goal_met"] = bool(out["speedup"] >= TARGET_SPEEDUP and rho >= TARGET_RHO)
    # what the noise allows: bf16 ranks as fp32 does if its rho is no lower than a second fp32 seed's,
    # i.e. the rerun's rho is not above bf16's interval
    if "rerun_rho" in out and "rho_ci95" in out:
        out["bf16_within_seed_noise"] = bool(out["rerun_rho"] <= out["rho_ci95"][1])
    return out


def _f(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def findings(meta: dict[str, Any], summary: list[dict[str, Any]]) -> list[str]:
    out = []
    for s in summary:
        if s["n"] < 2:
            out.append(f"- {s['space']}: {s['n']} architecture(s) with both trainings: nothing to rank yet.")
            continue
        lo, hi = s["rho_ci95"]
        out.append(f"- {s['space']}: bf16 ranks the {s['n']} architectures with rho {_f(s['spearman_rho'], '.2f')} "
                   f"(95% CI {_f(lo, '.2f')} to {_f(hi, '.2f')}) against fp32, mean |accuracy difference| "
                   f"{_f(s['mean_abs_accuracy_diff'], '.4f')}; bf16 takes {_f(s['bf16_time_s'], '.1f')} s per "
                   f"candidate against fp32's {_f(s['fp32_time_s'], '.1f')} s, a speed-up of "
                   f"{_f(s['speedup'], '.2f')} (95% CI {_f(s['speedup_ci95'][0], '.2f')} to "
                   f"{_f(s['speedup_ci95'][1], '.2f')}): the goal (>= {TARGET_SPEEDUP} with rho >= {TARGET_RHO}) is "
                   + ("met." if s["goal_met"] else "not met."))
        if "rerun_rho" in s:
            rlo, rhi = s["rerun_rho_ci95"]
            verdict = ("bf16's rho is within what a new seed alone gives" if s["bf16_within_seed_noise"]
                       else "bf16's rho is below what a new seed alone gives: bf16 ranks differently")
            out.append(f"  - noise ceiling: fp32 against fp32 with the next seed ranks them with rho "
                       f"{_f(s['rerun_rho'], '.2f')} (95% CI {_f(rlo, '.2f')} to {_f(rhi, '.2f')}), mean |accuracy "
                       f"difference| {_f(s['rerun_mean_abs_accuracy_diff'], '.4f')}: {verdict}.")
    if not meta["native_bf16"]:
        out.append("- This CPU has no native bf16 instructions: torch emulated bf16, so the times say nothing of a "
                   "CPU with AVX512-BF16 or AMX; the ranking is that of bf16 arithmetic, which such a CPU shares "
                   "up to the order of its sums.")
    return out


def markdown(meta: dict[str, Any], summary: list[dict[str, Any]], evals: list[dict[str, Any]]) -> str:
    flags = ", ".join(meta["cpu_precision_flags"]) or "none"
    out = [
        "# Precision fidelity: bf16 against fp32 brief training",
        "",
        f"Generated by `benchmarks/precision_fidelity.py`; do not edit by hand. Command: `{meta['command']}`",
        "",
        f"- date: {meta['date']}; wall time of this invocation {meta['run_time_s']:.0f} s"
        + (f"; {meta['reused']} trainings reused from an earlier invocation" if meta["reused"] else ""),
        f"- CPU: {meta['cpu']} ({meta['cpu_count']} logical CPUs); reduced-precision flags: {flags}; native bf16: "
        f"{'yes' if meta['native_bf16'] else 'no (torch emulates it: slower than fp32)'}",
        f"- torch {meta['torch']}, Python {meta['python']}, threads {meta['threads']}; nasconv revision "
        f"{meta['git']}; data: {meta['data']}",
        f"- the machine is shared: load average (1/5/15 min) before {meta['load_before']}, after "
        f"{meta['load_after']}; mean CPU used by other processes during the trainings: {meta['other_cpu_mean']} "
        "cores",
        f"- architectures: the first n distinct samples of `space.sample(random.Random({meta['seed']}))`; each "
        "trained with the space's default proxy in fp32 and in bf16 (autocast), one after the other, the order "
        "alternating between architectures",
        "- rho: Spearman's rank correlation of the bf16 accuracies against the fp32 ones, 95% CI by bootstrap "
        f"over architectures ({BOOTSTRAP_RESAMPLES} resamples); time: median `train_time_s` (training and "
        "validation) per candidate, 95% distribution-free CI; speed-up: median of the per-architecture "
        "fp32/bf16 time ratios",
    ]
    for space, cfg in meta["settings"].items():
        out.append(f"- {space} proxy: {cfg['train_images']} images x {cfg['epochs']} epoch(s) at batch "
                   f"{cfg['batch_size']}, {cfg['val_images']} val images, {cfg['resolution']} px, max_depth "
                   f"{cfg['max_depth']}, width_factor {cfg['width_factor']}, seed {cfg['seed']}")
    out += ["", "## Findings", "", *findings(meta, summary), "", "## Summary", "",
            "| space | n | Spearman rho | 95% CI | fp32 re-run rho | 95% CI | mean abs acc diff | fp32 s | 95% CI "
            "| bf16 s | 95% CI | speed-up | 95% CI | goal |",
            "|---|---:|---:|---|---:|---|---:|---:|---|---:|---|---:|---|---|"]
    ci = lambda v, fmt=".2f": f"{_f(v[0], fmt)} to {_f(v[1], fmt)}" if v else ""  # noqa: E731
    for s in summary:
        if not s["n"]:
            continue
        out.append(f"| {s['space']} | {s['n']} | {_f(s.get('spearman_rho'), '.2f')} | {ci(s.get('rho_ci95'))} | "
                   f"{_f(s.get('rerun_rho'), '.2f')} | {ci(s.get('rerun_rho_ci95'))} | "
                   f"{_f(s['mean_abs_accuracy_diff'], '.4f')} | {_f(s['fp32_time_s'], '.1f')} | "
                   f"{ci(s['fp32_time_ci95_s'], '.1f')} | {_f(s['bf16_time_s'], '.1f')} | "
                   f"{ci(s['bf16_time_ci95_s'], '.1f')} | {_f(s['speedup'], '.2f')} | {ci(s['speedup_ci95'])} | "
                   f"{'met' if s['goal_met'] else 'not met'} |")
    by_arch: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in evals:
        by_arch.setdefault((r["space"], r["arch_hash"]), {})[r["precision"]] = r
    for space in meta["settings"]:
        rows = sorted(((k, v) for k, v in by_arch.items() if k[0] == space), key=lambda kv: _index(kv[1]))
        if not rows:
            continue
        out += ["", f"## {space}: per architecture", "",
                "| # | arch_hash | ops | fp32 acc | bf16 acc | fp32 re-run acc | fp32 s | bf16 s |",
                "|---:|---|---|---:|---:|---:|---:|---:|"]
        for (_, h), res in rows:
            g = lambda p, k, fmt: _f(res[p][k], fmt) if p in res else "n/a"  # noqa: E731
            ops = next(iter(res.values()))["ops"].replace(" | ", "; ")
            out.append(f"| {_index(res)} | `{h}` | {ops} | {g('fp32', 'accuracy', '.4f')} | "
                       f"{g('bf16', 'accuracy', '.4f')} | {g(RERUN, 'accuracy', '.4f')} | "
                       f"{g('fp32', 'train_time_s', '.1f')} | "
                       f"{g('bf16', 'train_time_s', '.1f')} |")
    return "\n".join(out) + "\n"


def _index(res: dict[str, dict[str, Any]]) -> int:
    return next(iter(res.values()))["index"]


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", default=None, help=f"comma-separated spaces, run in this order (default "
                        f"{','.join(SPACES)}; resnet20 with --quick)")
    parser.add_argument("--n", type=int, default=None, help="architectures per space (default 12; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--data", default="fashion-mnist", help="dataset spec (default fashion-mnist)")
    parser.add_argument("--data-dir", default=None, help="where to look for the dataset first")
    parser.add_argument("--quick", action="store_true", help="smoke run; writes files only with --out")
    parser.add_argument("--fresh", action="store_true", help="start the stored evaluations file anew")
    parser.add_argument("--no-rerun", action="store_true", help="leave out the fp32 re-run with the next seed "
                        "(the noise ceiling of rho)")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    args = parser.parse_args(argv)

    spaces = [s.strip() for s in (args.spaces or ("resnet20" if args.quick else ",".join(SPACES))).split(",")
              if s.strip()]
    n = args.n if args.n is not None else (2 if args.quick else 12)
    if n < 1 or args.threads < 1:
        parser.error("--n and --threads must be >= 1")
    out_dir = Path(args.out) if args.out else (None if args.quick else Path(__file__).resolve().parent / "results")
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data, data_dir=args.data_dir)

    evals_path = out_dir / EVALS_NAME if out_dir is not None else None
    if evals_path is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.fresh and evals_path.exists():
            evals_path.unlink()
    stored = read_evals(evals_path) if evals_path is not None else {}
    flags = host_cpu_flags()
    meta: dict[str, Any] = {
        "command": "python benchmarks/precision_fidelity.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""),
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "git": git_revision(), "data": args.data, "seed": args.seed,
        "n": n, "load_before": load_avg(), "native_bf16": native_precision("bf16", "cpu"),
        "cpu_precision_flags": sorted(flags & {f for fs in NATIVE_CPU_FLAGS.values() for f in fs}), "settings": {},
    }
    t0, other, reused = time.perf_counter(), OtherCpu(), 0
    done: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []

    def save() -> None:
        if out_dir is None:
            return
        others = [r["other_cpu_cores"] for r in done if r.get("other_cpu_cores") is not None
                  and not math.isnan(r["other_cpu_cores"])]
        meta.update(date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    run_time_s=time.perf_counter() - t0, load_after=load_avg(), reused=reused,
                    other_cpu_mean=f"{statistics.fmean(others):.2f}" if others else "n/a")
        write_atomic(out_dir / JSON_NAME, json.dumps({"meta": meta, "summary": summary, "evaluations": done},
                                                     indent=1, default=float) + "\n")
        write_atomic(out_dir / MD_NAME, markdown(meta, summary, done))

    print(f"CPU {meta['cpu']}: native bf16 {'yes' if meta['native_bf16'] else 'no (emulated)'}; "
          f"{torch.get_num_threads()} threads; load average {meta['load_before']}", flush=True)
    for space in spaces:
        runs = [r for r in RUNS if not (args.no_rerun and r == RERUN)]
        cfgs = {r: train_config(space, RUNS[r][0], args.quick, seed_offset=RUNS[r][1]) for r in runs}
        keys = {r: settings_hash(c, args.data, torch.get_num_threads()) for r, c in cfgs.items()}
        meta["settings"][space] = {k: v for k, v in cfgs["fp32"].to_dict().items() if k != "precision"}
        pairs: list[dict[str, dict[str, Any]]] = []
        for i, arch in enumerate(sample_archs(space, n, args.seed)):
            pair: dict[str, dict[str, Any]] = {}
            # fp32 and bf16 alternate which goes first; the re-run comes last
            for p in [*(PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]), *runs[len(PRECISIONS):]]:
                key = (space, arch.arch_hash, p, keys[p])
                if key in stored:
                    pair[p], reused = stored[key], reused + 1
                    continue
                r = pair[p] = run_one(space, i, arch, ds, cfgs[p], keys[p], other, p)
                if evals_path is not None:
                    with evals_path.open("a") as f:
                        f.write(json.dumps(r, default=float) + "\n")
                print(f"  {space} #{i} {arch.arch_hash} {p}: acc {r['accuracy']:.4f}  {r['train_time_s']:.1f} s "
                      f"(others {r['other_cpu_cores']:.2f} cores)", flush=True)
            done.extend(pair[p] for p in runs)
            pairs.append(pair)
        summary.append(summarize(space, pairs))
        s = summary[-1]
        print(f"  {space}: rho {_f(s.get('spearman_rho'), '+.3f')} (fp32 re-run {_f(s.get('rerun_rho'), '+.3f')}), "
              f"speed-up {_f(s.get('speedup'), '.2f')}", flush=True)
        save()
    save()
    print(f"run time {time.perf_counter() - t0:.0f} s; {reused} trainings reused"
          + (f"; wrote {out_dir / MD_NAME} and {out_dir / JSON_NAME}" if out_dir is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
