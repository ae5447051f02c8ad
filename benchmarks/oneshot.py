"""One-shot ranking fidelity: does a weight-sharing supernet rank architectures like a longer training?

    python benchmarks/oneshot.py [--spaces resnet20] [--n 24] [--seed 0] [--data imagefolder:/tmp/cifar10]
                                 [--supernet-steps 2000] [--threads 2] [--quick] [--out DIR]

Per space: ``--n`` distinct random architectures (``proxy_fidelity.sample_archs``: the same ones
as that benchmark for a seed), each scored by

* ``oneshot``: the supernet (``nasconv.supernet``; trained once on the space, ``--supernet-steps``
  single-path steps at the proxy's settings), subnet with inherited weights, BN recalibrated on 4
  training batches, validated on the brief training's held-out images;
* ``train``: the default brief training (``eval_config_for(space)``, as the CLI does);
* ``synflow`` and ``params``;
* the reference: the proxy's settings trained 10x longer, as in ``proxy_fidelity.py`` (its stored
  rows are reused when the architecture and the settings key match).

Spearman's rho of each score against the reference accuracy, with a bootstrap 95% interval, and
the CPU-seconds per candidate (the supernet's training stated apart and amortised over 100 and
1,000 candidates). Every finished piece goes to ``oneshot.json`` at once; a re-run reuses them
(the supernet's own checkpoint resumes too), so the run can be stopped and continued.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import cpu_model, git_revision, write_atomic
from proxy_fidelity import bootstrap_rho, sample_archs, spearman

from nasconv.data import load_dataset
from nasconv.evaluate import eval_config_for, evaluate
from nasconv.spaces import load_space
from nasconv.supernet.evaluate import TrainedSupernet
from nasconv.supernet.train import SupernetConfig, train_supernet

METHODS = ("oneshot", "train", "synflow", "params")
LONGER = 10


def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        return json.loads(path.read_text())
    return {"meta": {}, "supernets": {}, "rows": {}}


def _save(path: Path, res: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(res, indent=1, default=float))


def _reused(space: str, arch_hash: str, phase: str, key: str) -> dict[str, Any] | None:
    """``proxy_fidelity.py``'s stored result of this phase when the architecture and settings key match."""
    pf = Path(__file__).parent / "results" / "proxy_fidelity.json"
    if not pf.exists():
        return None
    for row in json.loads(pf.read_text()).get("rows", []):
        got = row.get("results", {}).get(phase)
        if row["space"] == space and row["arch_hash"] == arch_hash and got and got.get("settings_key") == key:
            return {**got, "reused_from": "proxy_fidelity.json"}
    return None


def _timed(fn: Any) -> tuple[Any, float]:
    cpu0 = time.process_time()
    out = fn()
    return out, time.process_time() - cpu0


def summarize(rows: list[dict[str, Any]], supernet_cpu_s: float | None) -> list[dict[str, Any]]:
    done = [r for r in rows if "reference" in r["results"]]
    out = []
    for m in METHODS:
        have = [r for r in done if m in r["results"]]
        cpu = [r["results"][m]["cpu_s"] for r in rows if m in r["results"]]
        row: dict[str, Any] = {"method": m, "n": len(have),
                               "cpu_per_candidate_s": float(np.mean(cpu)) if cpu else None}
        if m == "oneshot" and supernet_cpu_s is not None and cpu:
            row["supernet_cpu_s"] = supernet_cpu_s
            for k in (100, 1000):
                row[f"amortised_{k}_cpu_s"] = float(np.mean(cpu)) + supernet_cpu_s / k
        if len(have) >= 4:
            a = [r["results"][m]["score"] for r in have]
            b = [r["results"]["reference"]["accuracy"] for r in have]
            row["spearman_rho"] = spearman(a, b)
            row["rho_ci95"] = list(bootstrap_rho(a, b))
        out.append(row)
    return out


def _write(path: Path, res: dict[str, Any], space: str) -> None:
    """The rows, the summary so far and the report: a stopped run has its figures up to there."""
    sn_cpu = res["supernets"].get(space, {}).get("cpu_s")
    res.setdefault("summary", {})[space] = summarize(list(res["rows"][space].values()), sn_cpu)
    _save(path, res)
    write_atomic(path.with_suffix(".md"), markdown(res))


def markdown(res: dict[str, Any]) -> str:
    lines = ["# One-shot ranking fidelity", "", f"`{res['meta'].get('command', '')}`", "",
             f"{res['meta'].get('cpu')}, torch {res['meta'].get('torch')}, git {res['meta'].get('git')}, "
             f"data {res['meta'].get('data')}", ""]
    for space, summ in res.get("summary", {}).items():
        sn = res["supernets"].get(space, {})
        lines += [f"## {space}", "", f"Supernet: {sn.get('step', 0)}/{sn.get('steps', 0)} steps, "
                  f"{sn.get('cpu_s', 0):.0f} CPU-s; memory estimate {sn.get('memory', '?')}", "",
                  "| method | n (with reference) | Spearman rho [95% CI] | CPU-s per candidate | amortised 100 / 1,000 |",
                  "|---|---|---|---|---|"]
        for r in summ:
            rho = (f"{r['spearman_rho']:.2f} [{r['rho_ci95'][0]:.2f}, {r['rho_ci95'][1]:.2f}]"
                   if "spearman_rho" in r else "-")
            cpu = f"{r['cpu_per_candidate_s']:.2f}" if r.get("cpu_per_candidate_s") is not None else "-"
            am = (f"{r['amortised_100_cpu_s']:.1f} / {r['amortised_1000_cpu_s']:.2f}"
                  if "amortised_100_cpu_s" in r else "-")
            lines.append(f"| {r['method']} | {r['n']} | {rho} | {cpu} | {am} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spaces", default="resnet20")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="imagefolder:/tmp/cifar10")
    ap.add_argument("--supernet-steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32", help="fp32 (default): as proxy_fidelity.py's stored trainings")
    ap.add_argument("--ref-val-images", type=int, default=10000, help="the reference's held-out images")
    ap.add_argument("--phases", default="oneshot,synflow,params,train,reference",
                    help="which scores, in this order per phase over all architectures")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 archs, tiny trainings")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--name", default="oneshot", help="results file stem (e.g. oneshot_fashion-mnist)")
    ap.add_argument("--supernet-dir", default="/tmp/nasconv-oneshot-supernets",
                    help="where the supernet checkpoints go (hundreds of MB: never under results/)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    path = out / (f"{args.name}_quick.json" if args.quick else f"{args.name}.json")
    res = _load(path)
    res["meta"].update(command="python " + " ".join(sys.argv), cpu=cpu_model(), torch=torch.__version__,
                       git=git_revision(), data=args.data, threads=args.threads, seed=args.seed, longer=LONGER)
    small = dict(train_images=256, val_images=128) if args.quick else {}
    for space_name in args.spaces.split(","):
        space = load_space(space_name)
        n = 3 if args.quick else args.n
        cfg = eval_config_for(space, data=args.data, device="cpu", latency=False, seed=args.seed,
                              precision=args.precision, **small)
        ds = load_dataset(cfg.data, seed=args.seed)
        steps = 20 if args.quick else args.supernet_steps
        scfg = SupernetConfig(eval=cfg, steps=steps, train_images=512 if args.quick else 40_000)
        ref_train = dataclasses.replace(cfg.train, train_images=min(len(ds.train_y), cfg.train.train_images * LONGER),
                                        epochs=max(1, -(-cfg.train.train_images * LONGER // len(ds.train_y))),
                                        val_images=args.ref_val_images if not args.quick else 256)
        if ref_train.epochs > 1:
            ref_train = dataclasses.replace(ref_train, train_images=cfg.train.train_images * LONGER // ref_train.epochs)
        ref_cfg = dataclasses.replace(cfg, train=ref_train)
        archs = sample_archs(space_name, n, args.seed)
        rows = res["rows"].setdefault(space_name, {})
        for i, a in enumerate(archs):
            rows.setdefault(a.arch_hash, {"index": i, "arch": a.to_dict(), "ops": a.ops_label(), "results": {}})
        folder = Path(args.supernet_dir)
        for phase in args.phases.split(","):
            if phase == "oneshot":
                sn = res["supernets"].setdefault(space_name, {"cpu_s": 0.0})
                if sn.get("step", 0) < steps:
                    from nasconv.supernet.memory import estimate_memory
                    from nasconv.supernet.model import ProxySettings

                    sn["memory"] = estimate_memory(space, ProxySettings.of(cfg.train, ds.num_classes),
                                                   batch_size=cfg.train.batch_size).describe()
                    outcome, cpu = _timed(lambda: train_supernet(space, scfg, folder, ds=ds))
                    sn.update(cpu_s=sn["cpu_s"] + cpu, step=outcome.step, steps=steps, loss=outcome.last_loss,
                              losses=outcome.losses)
                    _save(path, res)
                    print(f"{space_name} supernet {outcome.step}/{steps} loss {outcome.last_loss:.3f}", flush=True)
                loaded = None
            for h, row in rows.items():
                if phase in row["results"]:
                    continue
                arch = next(a for a in archs if a.arch_hash == h)
                if phase == "oneshot":
                    if loaded is None:
                        loaded = TrainedSupernet.load(space, scfg, folder, ds=ds)
                    m, cpu = _timed(lambda: loaded.evaluate_subnet(arch))
                else:
                    c = ref_cfg if phase == "reference" else cfg if phase == "train" else \
                        dataclasses.replace(cfg, proxy=phase)
                    m = _reused(space_name, h, phase, c.settings_key())
                    cpu = m["cpu_s"] if m else 0.0
                    if m is None:
                        m, cpu = _timed(lambda: evaluate(arch, c))
                row["results"][phase] = {"score": m["score"], "accuracy": m.get("accuracy"), "cpu_s": cpu,
                                         "reused_from": m.get("reused_from"),
                                         "accuracy_ci": m.get("accuracy_ci"), "settings_key": m.get("settings_key"),
                                         "load1": os.getloadavg()[0]}
                _write(path, res, space_name)
                print(f"{space_name} {row['index']:>2} {phase:<9} {m['score']:.4g} ({cpu:.1f} CPU-s)", flush=True)
        _write(path, res, space_name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
