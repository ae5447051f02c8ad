"""Proxy fidelity: does the cheap proxy rank architectures like a longer training does?

    python benchmarks/proxy_fidelity.py [--spaces resnet50,resnet20] [--n 12] [--seed 0] [--reference-images 80000]
                                        [--threads 2] [--quick] [--out DIR]

For each space, ``--n`` distinct architectures are sampled (``space.sample(random.Random(seed))``,
duplicates skipped) and each is evaluated with ``nasconv.evaluate.evaluate`` (``latency=False``):

* ``train``: the default brief-training proxy, with the space's ``proxy`` settings applied
  (``dataclasses.replace(TrainConfig(), **space.proxy_settings)``, as the CLI does);
* the reference: the same proxy settings (same reduced copy, seed, optimiser and one-cycle
  schedule, stretched over the longer run) trained on ``--reference-images`` image passes, a
  fixed number (default 80,000: 5x the 16,000 images of nasconv's first default proxy, kept
  when the default became 8,000 so that both proxies are compared with one reference):
  ``epochs = ceil(reference images / 60000)`` and ``train_images = reference images / epochs``
  (by default 40,000 x 2), validated on ``--ref-val-images`` (default: all 10,000
  t10k images, so that the reference's own noise is smaller);
* ``synflow``, ``naswot``, ``grad_norm`` and ``params``: the zero-cost proxies, on the full
  untrained network (``zc_batch`` images at the proxy resolution).

Each proxy's score is compared with the reference accuracy by Spearman's rho (average ranks for
ties) and Kendall's tau-b, with a bootstrap 95% interval for rho (architectures resampled).

Per-architecture rows are saved to ``proxy_fidelity.json`` after every evaluation; a re-run
reuses every stored result whose architecture hash and ``settings_key`` match, so an interrupted
run continues where it stopped. ``--n`` may be one number or per space (``resnet50=8,resnet20=12``);
the first n samples of a seed are always the same architectures. ``--quick`` is a smoke run (3
architectures, 600/200 images, a 2x reference) that writes files only when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import OtherCpu, cpu_model, git_revision
from _common import write_atomic as _write_atomic

from nasconv import stats as _stats
from nasconv.cost import estimate_cost
from nasconv.data import load_dataset
from nasconv.evaluate import EvalConfig, evaluate
from nasconv.proxies import ZERO_COST_PROXIES
from nasconv.spaces import load_space
from nasconv.stats import BOOTSTRAP_RESAMPLES, bootstrap_rho, kendall_tau_b, rankdata, spearman
from nasconv.train import TrainConfig, reduced_copy

#: the default proxy first, then the zero-cost ones; every one is compared with REFERENCE
PROXY_ORDER: tuple[str, ...] = ("train",) + ZERO_COST_PROXIES
REFERENCE = "reference"
#: the goal the issue sets for the default proxy
TARGET_RHO = 0.7
JSON_NAME, MD_NAME = "proxy_fidelity.json", "proxy_fidelity.md"
# the rank statistics moved to nasconv.stats; the other benchmarks still import them from here
bootstrap_interval, bootstrap_intervals = _stats.bootstrap_interval, _stats.bootstrap_intervals


def _finite(v: float | None) -> float:
    # A score of -inf (synflow/naswot of a degenerate network) or NaN ranks last.
    return -math.inf if v is None or math.isnan(v) else v


# --- settings -------------------------------------------------------------------------------


def proxy_train_config(space_name: str, base: TrainConfig) -> TrainConfig:
    """The default proxy's training settings for a space: the CLI's ``proxy`` section applied."""
    return dataclasses.replace(base, **load_space(space_name).proxy_settings)


def reference_train_config(proxy: TrainConfig, total: int, *, max_train_images: int,
                           val_images: int | None) -> TrainConfig:
    """``proxy`` trained on ``total`` image passes: more distinct images first, then more epochs."""
    epochs = max(1, math.ceil(total / max_train_images))
    train_images = int(total / epochs)  # exactly `total` images seen, in as few epochs as the data allows
    return dataclasses.replace(proxy, train_images=train_images, epochs=epochs,
                               val_images=val_images if val_images is not None else proxy.val_images)


def eval_configs(space_name: str, args: argparse.Namespace, n_train_available: int) -> dict[str, EvalConfig]:
    base_train = TrainConfig()
    if args.quick:
        base_train = dataclasses.replace(base_train, train_images=600, val_images=200)
    proxy_train = proxy_train_config(space_name, base_train)
    ref_train = reference_train_config(proxy_train, args.reference_images, max_train_images=n_train_available,
                                       val_images=args.ref_val_images)
    base = EvalConfig(data=args.data, data_dir=args.data_dir, latency=False, threads=args.threads)
    cfgs = {REFERENCE: dataclasses.replace(base, proxy="train", train=ref_train)}
    for p in PROXY_ORDER:
        cfgs[p] = dataclasses.replace(base, proxy=p, train=proxy_train)
    return cfgs


def parse_n(text: str, spaces: list[str]) -> dict[str, int]:
    """``12`` for every space, or ``resnet50=8,resnet20=12`` (spaces not named get the default 12)."""
    if "=" not in text:
        return {s: int(text) for s in spaces}
    out = {s: 12 for s in spaces}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in spaces:
            raise ValueError(f"--n names {name.strip()!r}, which is not in --spaces ({', '.join(spaces)})")
        out[name.strip()] = int(value)
    return out


def sample_archs(space_name: str, n: int, seed: int) -> list[Any]:
    space = load_space(space_name)
    rng = random.Random(seed)
    archs, seen = [], set()
    for _ in range(1000 * n):
        if len(archs) == n:
            break
        a = space.sample(rng)
        if a.arch_hash not in seen:
            seen.add(a.arch_hash)
            archs.append(a)
    return archs


# --- measurement ----------------------------------------------------------------------------


def run_one(arch: Any, cfg: EvalConfig, other: OtherCpu) -> dict[str, Any]:
    other.lap()
    cpu0 = time.process_time()
    m = evaluate(arch, cfg)
    keep = ("score", "accuracy", "val_loss", "diverged", "diverged_step", "train_time_s", "eval_time_s", "steps",
            "settings_key", "proxy_params", "proxy_macs")
    out = {k: m.get(k) for k in keep if k in m}
    out["cpu_s"] = time.process_time() - cpu0
    out["other_cpu_cores"] = other.lap()
    out["load1"] = os.getloadavg()[0]
    out["finished"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return out


def arch_row(space_name: str, index: int, arch: Any, train: TrainConfig) -> dict[str, Any]:
    full = estimate_cost(arch)
    red = reduced_copy(arch, max_depth=train.max_depth, width_factor=train.width_factor, resolution=train.resolution,
                       num_classes=10, in_channels=arch.in_channels, small_stem=train.small_stem)
    return {
        "space": space_name, "index": index, "arch_hash": arch.arch_hash, "ops": arch.ops_label(),
        "depths": [s.depth for s in arch.stages], "widths": [s.width for s in arch.stages],
        "params": full.params, "macs": full.macs,
        "proxy_depths": [s.depth for s in red.stages], "proxy_widths": [s.width for s in red.stages],
        "arch": arch.to_dict(), "results": {},
    }


# --- summary --------------------------------------------------------------------------------


def summarize(rows: list[dict[str, Any]], space: str, seed: int) -> list[dict[str, Any]]:
    done = [r for r in rows if r["space"] == space and REFERENCE in r["results"]]
    ref = [r["results"][REFERENCE]["accuracy"] for r in done]
    out = []
    for p in (REFERENCE,) + PROXY_ORDER:
        have = [r for r in done if p in r["results"]]
        times = [r["results"][p]["eval_time_s"] for r in have]
        entry: dict[str, Any] = {"space": space, "proxy": p, "n": len(have),
                                 "time_per_candidate_s": float(np.mean(times)) if times else None,
                                 "cpu_per_candidate_s": float(np.mean([r["results"][p]["cpu_s"] for r in have]))
                                 if have else None}
        if p != REFERENCE and len(have) >= 3:
            score = [_finite(r["results"][p]["score"]) for r in have]
            target = [r["results"][REFERENCE]["accuracy"] for r in have]
            entry["spearman_rho"] = spearman(score, target)
            entry["kendall_tau"] = kendall_tau_b(score, target)
            entry["rho_ci95"] = list(bootstrap_rho(score, target, seed=seed))
        out.append(entry)
    if ref:
        out[0]["accuracy_min"], out[0]["accuracy_max"] = min(ref), max(ref)
    return out


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def findings(summary: list[dict[str, Any]], rows: list[dict[str, Any]],
             ref_val_images: dict[str, int] | None = None) -> list[str]:
    lines = []
    for space in dict.fromkeys(s["space"] for s in summary):
        ss = [s for s in summary if s["space"] == space and s["proxy"] != REFERENCE and "spearman_rho" in s]
        if not ss:
            continue
        default = next((s for s in ss if s["proxy"] == "train"), None)
        best = max(ss, key=lambda s: -math.inf if math.isnan(s["spearman_rho"]) else s["spearman_rho"])
        n = ss[0]["n"]
        if default is not None:
            met = default["spearman_rho"] >= TARGET_RHO
            lo, hi = default["rho_ci95"]
            lines.append(
                f"- **{space}** (n = {n}): the default proxy's rho = {default['spearman_rho']:.2f} "
                f"(95% bootstrap interval {lo:.2f} to {hi:.2f}); the goal rho >= {TARGET_RHO} is "
                f"**{'met' if met else 'not met'}** on this sample"
                + ("" if met == (lo >= TARGET_RHO) else "; the interval straddles the goal, so n is too small to "
                   "settle it") + ".")
        lines.append(f"  Best-ranking proxy: `{best['proxy']}` (rho {best['spearman_rho']:.2f}); zero-cost proxies: "
                     + ", ".join(f"{s['proxy']} {_f(s['spearman_rho'])}" for s in ss if s["proxy"] != "train") + ".")
        accs = [r["results"][REFERENCE]["accuracy"] for r in rows if r["space"] == space and REFERENCE in r["results"]]
        div = [r["arch_hash"] for r in rows if r["space"] == space
               and any(v.get("diverged") for v in r["results"].values())]
        n_val = (ref_val_images or {}).get(space)
        noise = ""
        if n_val and accs:
            # the reference's own measurement noise: binomial standard error of one accuracy
            p = statistics.fmean(accs)
            se = math.sqrt(p * (1 - p) / n_val)
            noise = (f"; one reference accuracy on {n_val} images has a standard error of {100 * se:.2f} points, so "
                     f"the range is {(max(accs) - min(accs)) / se:.1f} standard errors"
                     + (" — too narrow for the reference itself to rank these architectures reliably, which caps "
                        "any proxy's rho" if (max(accs) - min(accs)) < 4 * se else ""))
        lines.append(f"  Reference accuracies span {min(accs):.4f} to {max(accs):.4f} (range "
                     f"{100 * (max(accs) - min(accs)):.1f} points{noise})"
                     + (f"; diverged runs (accuracy 0): {', '.join(div)}" if div else "") + ".")
    return lines


def _total_s(rows: list[dict[str, Any]], key: str = "eval_time_s") -> float:
    return sum(v.get(key) or 0.0 for r in rows for v in r["results"].values())


def markdown(meta: dict[str, Any], summary: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    out = [
        "# Proxy fidelity: proxy scores vs a longer training",
        "",
        f"Generated by `benchmarks/proxy_fidelity.py`; do not edit by hand. Command: `{meta['command']}`",
        "",
        f"- date: {meta['date']}; wall time of this invocation {meta['run_time_s']:.0f} s"
        + (f"; {meta['reused']} results reused from an earlier invocation (their times are those of that one)"
           if meta["reused"] else ""),
        f"- evaluation time summed over every result in the tables: {_total_s(rows) / 3600:.1f} h wall, "
        f"{_total_s(rows, 'cpu_s') / 3600:.1f} h CPU",
        f"- torch {meta['torch']}, Python {meta['python']}, threads {meta['threads']} (torch.set_num_threads)",
        f"- CPU: {meta['cpu']} ({meta['cpu_count']} logical CPUs); the machine is shared: load average (1/5/15 min) "
        f"before: {meta['load_before']}, after: {meta['load_after']}; mean CPU used by other processes during the "
        f"evaluations: {meta['other_cpu_mean']} cores, so times are inflated",
        f"- nasconv revision: {meta['git']}; data: {meta['data']}",
        f"- architectures: the first n distinct samples of `space.sample(random.Random({meta['seed']}))` per space",
    ]
    for space, s in meta["settings"].items():
        p, r = s["train"]["train"], s[REFERENCE]["train"]
        whole = p["max_depth"] is None and p["width_factor"] == 1.0
        what = ("the whole network" if whole else f"a reduced copy (max_depth {p['max_depth']}, width_factor "
                f"{p['width_factor']}, small_stem {p['small_stem']})")
        out.append(
            f"- {space}: default proxy = brief training of {what}, {p['train_images']} images x {p['epochs']} "
            f"epoch(s), {p['val_images']} val images, {p['resolution']} px, seed {p['seed']}; reference = the same network and "
            f"settings, {r['train_images']} images x {r['epochs']} epoch(s) ({meta['longer']:g}x the images seen; the "
            f"one-cycle schedule is stretched over the longer run), {r['val_images']} val images; zero-cost proxies "
            f"score the full untrained network on {s['synflow']['zc_batch']} images")
    out += [
        "- rho = Spearman's rank correlation (average ranks for ties), tau = Kendall's tau-b, each of the proxy's "
        "score against the reference's validation accuracy; 95% CI: bootstrap over architectures "
        f"({BOOTSTRAP_RESAMPLES} resamples). Time per candidate: mean wall time of `evaluate()` (CPU time in "
        "brackets: > wall when 2 threads ran, < wall when the process waited for a core)",
        "",
        "## Findings",
        "",
        *findings(summary, rows, {space: st[REFERENCE]["train"]["val_images"]
                                  for space, st in meta["settings"].items()}),
        "",
        "## Summary",
        "",
        "| space | proxy | n | Spearman rho | 95% CI | Kendall tau | time per candidate s (CPU s) |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for s in summary:
        ci = f"{s['rho_ci95'][0]:.2f} to {s['rho_ci95'][1]:.2f}" if "rho_ci95" in s else ""
        name = {"train": "train (default proxy)", REFERENCE: f"{REFERENCE} ({meta['longer']:g}x training)"}.get(
            s["proxy"], s["proxy"])
        out.append(f"| {s['space']} | {name} | {s['n']} | {_f(s.get('spearman_rho'))} | {ci} | "
                   f"{_f(s.get('kendall_tau'))} | {_f(s['time_per_candidate_s'], '.1f')} "
                   f"({_f(s['cpu_per_candidate_s'], '.1f')}) |")
    for space in dict.fromkeys(r["space"] for r in rows):
        rs = [r for r in rows if r["space"] == space and REFERENCE in r["results"]]
        if not rs:
            continue
        out += ["", f"## {space}: per architecture", "",
                "Ops per stage (separated by `;`); depths x widths of the searched network (the proxy trains the reduced copy). "
                "Rank 1 = best reference accuracy.", "",
                "| # | arch_hash | ops | depths x widths | ref acc | ref rank | train acc | synflow | naswot | "
                "grad_norm | params | ref s | train s |",
                "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ranks = rankdata([-r["results"][REFERENCE]["accuracy"] for r in rs])
        for r, rank in zip(rs, ranks):
            res = r["results"]
            g = lambda p, k="score", fmt=".3f": _f(res[p][k], fmt) if p in res else "n/a"  # noqa: E731
            dw = "/".join(map(str, r["depths"])) + " x " + "/".join(map(str, r["widths"]))
            out.append(f"| {r['index']} | `{r['arch_hash']}` | {r['ops'].replace(' | ', '; ')} | {dw} | {g(REFERENCE, 'accuracy', '.4f')} | "
                       f"{rank:g} | {g('train', 'accuracy', '.4f')} | {g('synflow')} | {g('naswot', fmt='.1f')} | "
                       f"{g('grad_norm')} | {g('params', fmt=',.0f')} | {g(REFERENCE, 'eval_time_s', '.0f')} | "
                       f"{g('train', 'eval_time_s', '.0f')} |")
    return "\n".join(out) + "\n"


# --- output ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", default="resnet50,resnet20", help="comma-separated spaces, run in this order")
    parser.add_argument("--n", default=None, help="architectures per space: 12 (default; 3 with --quick) or "
                        "per space, e.g. resnet50=8,resnet20=12")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--reference-images", type=int, default=None,
                        help="image passes of the reference training (default 80000; 1200 with --quick)")
    parser.add_argument("--ref-val-images", type=int, default=None,
                        help="validation images of the reference (default: all 10,000; 200 with --quick)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--data", default="fashion-mnist", help="dataset spec (default fashion-mnist)")
    parser.add_argument("--data-dir", default=None, help="where to look for the dataset first")
    parser.add_argument("--quick", action="store_true", help="smoke run; writes files only with --out")
    parser.add_argument("--fresh", action="store_true", help="ignore results stored in the output JSON")
    parser.add_argument("--resume-from", action="append", default=[], metavar="JSON",
                        help="also reuse the results stored in this JSON (repeatable): to merge a second process's")
    parser.add_argument("--indices", default=None,
                        help="evaluate only these sample indices, in this order (e.g. 7,6,5 for a second process "
                        "on other architectures; merge its JSON with --resume-from)")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    args = parser.parse_args(argv)

    spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    try:
        n_per_space = parse_n(args.n or ("3" if args.quick else "12"), spaces)
    except ValueError as exc:
        parser.error(str(exc))
    if any(n < 3 for n in n_per_space.values()):
        parser.error("--n must be >= 3 (rank correlations of fewer points mean nothing)")
    if args.reference_images is None:
        args.reference_images = 1200 if args.quick else 80000
    if args.reference_images < 1:
        parser.error(f"--reference-images must be >= 1, got {args.reference_images}")
    base = TrainConfig()
    args.longer = args.reference_images / ((600 if args.quick else base.train_images) * base.epochs)
    if args.ref_val_images is None:
        args.ref_val_images = 200 if args.quick else None
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    out_dir = Path(args.out) if args.out else (None if args.quick else Path(__file__).resolve().parent / "results")
    torch.set_num_threads(args.threads)

    ds = load_dataset(args.data, data_dir=args.data_dir)
    n_train_available = len(ds.train_y)
    if args.ref_val_images is None:
        args.ref_val_images = len(ds.val_y)

    # Results stored by an earlier run, keyed by (arch_hash, settings_key): reused, never recomputed.
    stored: dict[tuple[str, str], dict[str, Any]] = {}
    old_rows: list[dict[str, Any]] = []
    old_settings: dict[str, Any] = {}
    sources = [Path(p) for p in args.resume_from]
    if out_dir is not None and (out_dir / JSON_NAME).exists() and not args.fresh:
        old = json.loads((out_dir / JSON_NAME).read_text())
        old_rows = old.get("rows", []) + old.get("extra_rows", [])
        old_settings = old.get("meta", {}).get("settings", {})
    # unique by (space, arch_hash): a row evaluated again later supersedes nothing it has not redone
    old_rows = list({(r["space"], r["arch_hash"]): r for r in reversed(old_rows)}.values())[::-1]
    source_rows = [r for path in sources for d in [json.loads(path.read_text())]
                   for r in d.get("rows", []) + d.get("extra_rows", [])]
    for r in old_rows + source_rows:
        for res in r["results"].values():
            stored[(r["arch_hash"], res["settings_key"])] = res
    reused = 0
    indices = [int(i) for i in args.indices.split(",")] if args.indices else None

    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    t0 = time.perf_counter()
    other = OtherCpu()
    meta: dict[str, Any] = {
        "command": "python benchmarks/proxy_fidelity.py" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:])),
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "git": git_revision(), "data": args.data,
        "seed": args.seed, "longer": args.longer, "n": n_per_space, "load_before": load_before,
        "settings": {k: v for k, v in old_settings.items() if k not in spaces},
    }
    rows: list[dict[str, Any]] = []
    # Rows of spaces not in this invocation stay in the summary; stored rows of this invocation's
    # spaces that it does not evaluate (beyond n, other indices) are kept, outside the summary.
    keep_old = [r for r in old_rows if r["space"] not in spaces]

    def extra_rows() -> list[dict[str, Any]]:
        seen = {(r["space"], r["arch_hash"]) for r in rows + keep_old}
        out: list[dict[str, Any]] = []
        for r in old_rows:
            if (r["space"], r["arch_hash"]) not in seen:
                seen.add((r["space"], r["arch_hash"]))
                out.append(r)
        return out

    def save() -> None:
        if out_dir is None:
            return
        meta.update(date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    run_time_s=time.perf_counter() - t0, load_after=", ".join(f"{v:.2f}" for v in os.getloadavg()),
                    reused=reused)
        all_rows = rows + keep_old
        others = [v.get("other_cpu_cores") for r in all_rows for v in r["results"].values()]
        others = [o for o in others if o is not None and not math.isnan(o)]
        meta["other_cpu_mean"] = f"{np.mean(others):.2f}" if others else "n/a"
        summary = [s for sp in dict.fromkeys(r["space"] for r in all_rows) for s in summarize(all_rows, sp, args.seed)]
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_dir / JSON_NAME, json.dumps({"meta": meta, "summary": summary, "rows": all_rows,
                                                       "extra_rows": extra_rows()},
                                                      indent=1, default=float) + "\n")
        _write_atomic(out_dir / MD_NAME, markdown(meta, summary, all_rows))

    for space in spaces:
        cfgs = eval_configs(space, args, n_train_available)
        meta["settings"][space] = {p: c.to_dict() for p, c in cfgs.items()}
        archs = sample_archs(space, max([n_per_space[space]] + [i + 1 for i in indices or []]), args.seed)
        print(f"{space}: {len(archs)} architectures; reference {cfgs[REFERENCE].train.train_images} images x "
              f"{cfgs[REFERENCE].train.epochs} epoch(s); load average {os.getloadavg()[0]:.2f}", flush=True)
        for i in (indices if indices is not None else range(len(archs))):
            if not 0 <= i < len(archs):
                parser.error(f"--indices: {i} is not a sample index of {space} (0 to {len(archs) - 1})")
            arch = archs[i]
            row = arch_row(space, i, arch, cfgs["train"].train)
            rows.append(row)
            # reference first: without it the row counts for nothing
            for p in (REFERENCE,) + PROXY_ORDER:
                cfg = cfgs[p]
                key = (arch.arch_hash, cfg.settings_key())
                if key in stored:
                    row["results"][p] = stored[key]
                    reused += 1
                    continue
                res = run_one(arch, cfg, other)
                row["results"][p] = res
                shown = f"acc {res['accuracy']:.4f}" if res.get("accuracy") is not None else f"score {res['score']:.4g}"
                print(f"  {space} #{i} {arch.arch_hash} {p:>9}: {shown}  {res['eval_time_s']:.1f} s "
                      f"(cpu {res['cpu_s']:.1f} s, others {res['other_cpu_cores']:.2f} cores)", flush=True)
                save()
            save()
        for s in summarize(rows, space, args.seed):
            if "spearman_rho" in s:
                print(f"  {space} {s['proxy']:>9}: rho {s['spearman_rho']:+.3f}  tau {s['kendall_tau']:+.3f}  "
                      f"CI {s['rho_ci95'][0]:+.2f}..{s['rho_ci95'][1]:+.2f}", flush=True)
    save()
    print(f"run time {time.perf_counter() - t0:.0f} s" + (f"; wrote {out_dir / MD_NAME} and {out_dir / JSON_NAME}"
                                                            if out_dir is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
