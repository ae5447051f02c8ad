"""How fast is the analytic cost model? (issue target: well under 1 ms per architecture)

Times ``estimate_cost`` on random architectures of every shipped space with cold caches (as
for a newly sampled candidate), median over repeats, next to building the model and counting
with FlopCounterMode on the meta device (what the analytic model saves).

    python benchmarks/cost_speed.py [--n 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from nasconv.build import build_model
from nasconv.cost import clear_cost_caches, estimate_cost
from nasconv.flops import measure_cost
from nasconv.spaces import list_spaces, load_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name in list_spaces():
        space = load_space(name)
        archs = [space.sample(random.Random(i)) for i in range(args.n)]
        runs = []
        for _ in range(args.repeats):
            clear_cost_caches()
            t0 = time.perf_counter()
            for a in archs:
                estimate_cost(a)
            runs.append((time.perf_counter() - t0) / len(archs) * 1e3)
        meta = []
        for a in archs[:10]:
            t0 = time.perf_counter()
            with torch.device("meta"):
                m = build_model(a)
            measure_cost(m, (a.in_channels, a.resolution, a.resolution))
            meta.append((time.perf_counter() - t0) * 1e3)
        rows.append({"space": name, "analytic_ms_median": statistics.median(runs),
                     "analytic_ms_runs": runs, "meta_measure_ms_median": statistics.median(meta)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Analytic cost speed\n\n{dt.date.today()}, {platform.processor() or platform.machine()}, "
              f"torch {torch.__version__}, `python benchmarks/cost_speed.py --n {args.n} --repeats {args.repeats}`"
              f"\n\nCold caches, {args.n} random architectures per space, median of {args.repeats} runs.\n\n")
    lines = ["| space | estimate_cost, ms/arch | build on meta + FlopCounterMode, ms/arch | speed-up |",
             "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['space']} | {r['analytic_ms_median']:.3f} | {r['meta_measure_ms_median']:.1f} | "
                     f"{r['meta_measure_ms_median'] / r['analytic_ms_median']:.0f}x |")
    text = header + "\n".join(lines) + "\n"
    (out / "cost_speed.md").write_text(text)
    (out / "cost_speed.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
