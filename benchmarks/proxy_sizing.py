"""Proxy sizing: does the proxy sized to the task (nasconv.search.task.proxy_length) rank
architectures like a 5x longer training where the 10-class default does not?

    python benchmarks/proxy_sizing.py [--datasets unb40,cifar10,cifar100] [--n 6] [--seed 0]
                                      [--cifar10 /tmp/cifar10] [--cifar100 /tmp/cifar100] [--threads 2]
                                      [--quick] [--out DIR]

Data: the real CIFAR-10 and CIFAR-100 images (``train/`` and ``test/`` JPEG folders, e.g.
``tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp``), and ``unb40``: an unbalanced 40-class
folder built from CIFAR-100 (the first 40 classes; class i keeps 60 + 440 * i / 39 training images,
60 to 500, and a fifth as many test images, 12 to 100, in ``--work``/unb40, never in the repo).

For each dataset, ``--n`` architectures of the resnet20 space (``space.sample(random.Random(seed))``,
with the data's class count) are evaluated (``latency=False``), in this order so that a partial
run is useful (every ``default``, then per architecture its ``reference`` and ``sized`` run):
``default`` (the 10-class default proxy, 8,000 images, 1 epoch), ``reference``
(the same settings on 5x its images: 40,000 image passes, the same held-out sample),
``sized`` (:func:`proxy_length`; the same as ``default`` on 10 classes, so not run again). Each is
scored on the metric a search would choose (balanced accuracy where held-out classes differ by
more than 2x). Reported: Spearman's rho of ``default`` and ``sized`` against ``reference`` with
bootstrap 95% intervals (architectures resampled) and the paired difference; how many standard
errors each proxy's accuracies stand above the majority-class (or chance) rate; seconds per
candidate. Every evaluation is stored in ``proxy_sizing.json`` as it finishes; a re-run reuses
every stored result whose settings key matches (resumable).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import OtherCpu, cpu_model, git_revision, write_results
from proxy_fidelity import bootstrap_intervals, reference_train_config, sample_archs, spearman

from nasconv.data import load_dataset
from nasconv.data.task import describe_task
from nasconv.evaluate import EvalConfig, evaluate
from nasconv.search.task import proxy_length
from nasconv.spaces import load_space
from nasconv.train import TrainConfig

NAME = "proxy_sizing"
SPACE = "resnet20"
LONGER = 5
SETTINGS = ("default", "reference", "sized")


def build_unbalanced(cifar100: Path, out: Path, classes: int = 40) -> Path:
    """The ``unb40`` folder (module docstring), hard links (copies across file systems)."""
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    names = sorted(p.name for p in (cifar100 / "train").iterdir() if p.is_dir())[:classes]
    for i, name in enumerate(names):
        n_train = 60 + round(440 * i / (classes - 1))
        for split, n in (("train", n_train), ("test", max(1, n_train // 5))):
            src = sorted((cifar100 / split / name).iterdir())[:n]
            (out / split / name).mkdir(parents=True, exist_ok=True)
            for f in src:
                try:
                    os.link(f, out / split / name / f.name)
                except OSError:
                    shutil.copy2(f, out / split / name / f.name)
    (out / ".complete").write_text("ok")
    return out


def dataset_specs(args: argparse.Namespace) -> dict[str, str]:
    return {"cifar10": f"cifar10:{args.cifar10}", "cifar100": f"cifar100:{args.cifar100}",
            "unb40": f"imagefolder:{build_unbalanced(Path(args.cifar100), Path(args.work) / 'unb40')}"}


def configs(spec: str, ds: Any, metric: str, args: argparse.Namespace) -> dict[str, EvalConfig]:
    space = load_space(SPACE)
    base = dataclasses.replace(TrainConfig(), **space.proxy_settings)
    if args.quick:
        base = dataclasses.replace(base, train_images=128, val_images=100)
    length = proxy_length(base.train_images, base.val_images, ds.num_classes, len(ds.train_y))
    sized = dataclasses.replace(base, train_images=length.train_images, epochs=length.epochs,
                                val_images=length.val_images)
    ref = reference_train_config(base, LONGER * base.train_images * base.epochs, max_train_images=len(ds.train_y),
                                 val_images=200 if args.quick else None)
    ev = EvalConfig(data=spec, latency=False, threads=args.threads, metric=metric, device="cpu")
    return {"default": dataclasses.replace(ev, train=base), "reference": dataclasses.replace(ev, train=ref),
            "sized": dataclasses.replace(ev, train=sized)}


def run_dataset(name: str, spec: str, args: argparse.Namespace, res: dict[str, Any], save: Any) -> None:
    ds = load_dataset(spec)
    summary = describe_task(ds, spec)
    cfgs = configs(spec, ds, summary.metric, args)
    space = dataclasses.replace(load_space(SPACE), num_classes=ds.num_classes)
    archs = sample_archs(SPACE, args.n, args.seed)
    archs = [dataclasses.replace(a, num_classes=ds.num_classes) for a in archs]
    entry = res["datasets"].setdefault(name, {"rows": {}})
    entry.update(spec=spec, line=summary.line(), chance_rate=summary.chance_rate, metric=summary.metric,
                 num_classes=ds.num_classes, settings={k: c.train.to_dict() for k, c in cfgs.items()},
                 same_as_default=cfgs["sized"].train == cfgs["default"].train)
    print(summary.line(), flush=True)
    other = OtherCpu()
    # every default first (cheap, the "before" picture), then architecture by architecture its
    # reference and sized run, so that a run cut short leaves complete triples
    order = [("default", i) for i in range(len(archs))] + [
        (s, i) for i in range(len(archs)) for s in SETTINGS[1:] if not (s == "sized" and entry["same_as_default"])]
    only = None if args.only is None else {int(i) for i in args.only.split(",")}
    wanted = set(args.run.split(","))
    for setting, i in order:
        if setting not in wanted or (only is not None and i not in only):
            continue
        arch = archs[i]
        cfg = cfgs[setting]
        key = cfg.settings_key()
        space.check_arch(arch)
        row = entry["rows"].setdefault(arch.arch_hash, {"index": i, "ops": arch.ops_label(), "results": {}})
        got = row["results"].get(setting)
        if got and got.get("settings_key") == key:
            continue
        other.lap()
        t0 = time.perf_counter()
        m = evaluate(arch, cfg)
        row["results"][setting] = {
            k: m.get(k) for k in ("accuracy", "accuracy_se", "plain_accuracy", "steps", "train_time_s",
                                  "eval_time_s", "settings_key", "diverged")}
        row["results"][setting].update(wall_s=time.perf_counter() - t0, other_cpu_cores=other.lap(),
                                       load1=os.getloadavg()[0],
                                       finished=_dt.datetime.now(_dt.timezone.utc).strftime("%H:%M:%S UTC"))
        print(f"{name} {setting} {i}: {m['accuracy']:.4f} +- {m['accuracy_se']:.4f} "
              f"({m['eval_time_s']:.0f} s)", flush=True)
        save()


def summarize(entry: dict[str, Any]) -> dict[str, Any]:
    rows = list(entry["rows"].values())
    out: dict[str, Any] = {}
    with_ref = [r for r in rows if "reference" in r["results"]]
    sized_too = not entry.get("same_as_default") and with_ref and all("sized" in r["results"] for r in with_ref)
    proxies = ("default", "sized") if sized_too else ("default",)
    for p in ("default", "sized", "reference"):
        done = [r["results"][p] for r in rows if p in r["results"]]
        if done:
            margins = [(d["accuracy"] - entry["chance_rate"]) / d["accuracy_se"] for d in done if d["accuracy_se"]]
            out[p] = {"n": len(done), "mean_accuracy": statistics.fmean(d["accuracy"] for d in done),
                      "s_per_candidate": statistics.fmean(d["eval_time_s"] for d in done),
                      "min_se_above_chance": min(margins) if margins else None}
    both = [r for r in rows if "reference" in r["results"] and all(p in r["results"] for p in proxies)]
    if len(both) >= 3:
        ref = np.array([r["results"]["reference"]["accuracy"] for r in both])
        cols = {p: np.array([r["results"][p]["accuracy"] for r in both]) for p in proxies}

        def stat(i: np.ndarray) -> list[float]:
            vals = [spearman(cols[p][i], ref[i]) for p in proxies]
            return vals + ([vals[1] - vals[0]] if len(proxies) == 2 else [])

        point = stat(np.arange(len(both)))
        lo, hi = bootstrap_intervals(stat, len(both))
        names = list(proxies) + (["sized - default"] if len(proxies) == 2 else [])
        out["rho"] = {n: {"rho": point[k], "ci": [lo[k], hi[k]]} for k, n in enumerate(names)}
        out["rho_archs"] = len(both)
    return out


def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    lines = [f"# Proxy sizing ({m['date']})", "",
             f"`{m['command']}` at {m['revision']} on {m['cpu']} ({m['threads']} torch threads, niceness "
             f"{m['niceness']}); resnet20 space, {m['n']} architectures per dataset, seed {m['seed']}.", "",
             "Spearman's rho of each proxy's accuracy (the metric a search would choose) against a 5x longer "
             "training (40,000 image passes; held-out images as its settings say), bootstrap 95% intervals over "
             "architectures; "
             "`SE above chance`: the smallest, over architectures, of (accuracy - majority-class or chance rate) "
             "/ its SE.", ""] + ([m["note"], ""] if m.get("note") else [])
    for name, entry in res["datasets"].items():
        s = entry.get("summary") or {}
        lines += [f"## {name}", "", entry.get("line", ""), ""]
        lines.append("| proxy | settings | evaluated | mean accuracy | SE above chance (min) | s per candidate |")
        lines.append("|---|---|---|---|---|---|")
        for p in SETTINGS:
            if p not in s:
                continue
            t = entry["settings"][p]
            lines.append(f"| {p} | {t['train_images']:,} images x {t['epochs']} epoch(s), val "
                         f"{t['val_images'] if t['val_images'] else 'all'} | {s[p]['n']} | "
                         f"{s[p]['mean_accuracy']:.3f} | "
                         f"{s[p]['min_se_above_chance']:.1f} | {s[p]['s_per_candidate']:.0f} |")
        if entry.get("same_as_default"):
            lines.append("\nThe sized proxy is the default here (10 classes).")
        elif "sized" not in s:
            t, r, d = (entry["settings"][k] for k in ("sized", "reference", "default"))
            sized, ref = t["train_images"] * t["epochs"], r["train_images"] * r["epochs"]
            why = (f"it trains longer than the 5x reference ({ref:,} image passes), so a rank correlation with that "
                   "reference would not test it" if sized >= ref else "not run in this invocation")
            lines.append(f"\nThe sized proxy ({sized:,} image passes, {sized / (d['train_images'] * d['epochs']):.0f}x "
                         f"the default's cost per candidate) was not run: {why}.")
        if "rho" in s:
            lines.append("")
            for k, v in s["rho"].items():
                lines.append(f"- rho {k}: {v['rho']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}] "
                             f"({s['rho_archs']} architectures)")
        else:
            lines.append("\nToo few architectures with every result yet for a rank correlation.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="unb40,cifar10,cifar100")
    p.add_argument("--n", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cifar10", default="/tmp/cifar10")
    p.add_argument("--cifar100", default="/tmp/cifar100")
    p.add_argument("--work", default="/tmp/nasconv-proxy-sizing", help="where the unb40 folder is built")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a shared CPU 2 threads spin-wait)")
    p.add_argument("--quick", action="store_true", help="smoke run (128 images); writes only with --out")
    p.add_argument("--out", default=None)
    p.add_argument("--only", default=None, metavar="I,J", help="evaluate only these architecture indices (to split "
                   "a dataset over processes, each with its own --out; merge with --merge)")
    p.add_argument("--run", default=",".join(SETTINGS), metavar="SETTINGS",
                   help="the settings to evaluate (default all; 'none': only summarise what is stored)")
    p.add_argument("--note", default=None, help="a paragraph for the report (e.g. how the merged runs were made)")
    p.add_argument("--merge", nargs="*", default=[], metavar="JSON", help="stored results of other processes to "
                   "merge into this one's first")
    args = p.parse_args(argv)
    if args.n < 3:
        p.error("--n must be >= 3")
    out = Path(args.out) if args.out else (None if args.quick else Path(__file__).parent / "results")
    path = out / f"{NAME}.json" if out else None
    res: dict[str, Any] = json.loads(path.read_text()) if path and path.exists() else {"datasets": {}}
    for other in args.merge:
        for name, entry in json.loads(Path(other).read_text())["datasets"].items():
            mine = res["datasets"].setdefault(name, {**entry, "rows": {}})
            for h, row in entry["rows"].items():
                mine["rows"].setdefault(h, {**row, "results": {}})["results"].update(row["results"])
    res["meta"] = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   "command": " ".join(["python benchmarks/proxy_sizing.py", *(argv or sys.argv[1:])]),
                   "revision": git_revision(), "cpu": cpu_model(), "threads": args.threads, "n": args.n,
                   "seed": args.seed, "niceness": os.nice(0), "quick": args.quick, "note": args.note}

    def save() -> None:
        for entry in res["datasets"].values():
            entry["summary"] = summarize(entry)
        if out:
            write_results(out, NAME, markdown(res), res)

    specs = dataset_specs(args)
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        run_dataset(name, specs[name], args, res, save)
    save()
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
