"""Loading an image folder: decoding into memory in every process (before) against the
memory-mapped data cache (after), in time and in memory (issue #19).

    python benchmarks/data_pipeline.py [--folder DIR] [--repeats 3] [--procs 4] [--quick] [--out DIR]

On the 60,000 CIFAR-10 JPEGs in image-folder layout (``--folder``, default
/tmp/cifar10-jpeg/cifar10; extracted from ``../shared/data/cifar10-jpeg.tar.gz`` when missing),
every measurement in a fresh process (``python -c``):

- ``before``: the loader nasconv had until this change (headers, then every image decoded in
  one process into a list, stacked in memory), reimplemented here line for line;
- ``first``: ``load_dataset("imagefolder:DIR")`` with an empty cache (parallel decode straight
  into the cache file, statistics, metadata);
- ``cached``: the same in a new process once the cache holds the entry (a memory map).

Times are of the ``load_dataset`` call inside the process (imports excluded; the process's
wall time is reported beside). Memory: 1 and ``--procs`` concurrent processes each load the
dataset and touch every pixel (a sum over all images, per class), then hold still while their
resident set (RSS, peak ``VmHWM``) and proportional set (PSS, from /proc/PID/smaps_rollup, which
splits a page shared by k processes k ways) are read. The data's share is the processes' PSS
minus that of as many baseline processes (torch and nasconv.data imported, nothing loaded),
against one copy of the images (N x C x H x W bytes).

Goals: cached load >= 20x faster than ``before``; ``--procs`` processes' data PSS <= 1.2x one
copy. ``--quick`` copies 2,000 of the images (150 train + 50 test per class) to a temporary folder
and runs each measurement once: a smoke test, which writes files only when ``--out`` is given.
Writes ``data_pipeline.md`` and ``data_pipeline.json`` to ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_FOLDER = Path("/tmp/cifar10-jpeg/cifar10")
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
SPEEDUP_GOAL = 20.0
MEMORY_GOAL = 1.2


# --- the loader before this change, as it was (nasconv/data/imagefolder.py) --------------------


def old_load_imagefolder(root: Path):
    """Headers first, then every image decoded here into a list and stacked: one full copy in
    each process (two at the peak)."""
    from collections import Counter

    import numpy as np
    import torch
    from PIL import Image

    from nasconv.data.dataset import Dataset
    from nasconv.data.decode import GREY_MODES, to_mode
    from nasconv.data.splits import holdout_split

    def class_dirs(d: Path) -> dict[str, list[Path]]:
        return {c.name: sorted(p for p in c.iterdir() if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg")
                               and not p.name.startswith("."))
                for c in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))}

    val_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        splits = {"train": class_dirs(root / "train"), "val": class_dirs(val_dir)}
    else:
        splits = {"all": class_dirs(root)}
    classes = tuple(splits["train" if "train" in splits else "all"])
    items = [(p, i, split) for split, by_class in splits.items()
             for i, name in enumerate(classes) for p in by_class.get(name, [])]
    modes, sizes = [], Counter()
    for path, _, _ in items:
        with Image.open(path) as im:
            modes.append(im.mode)
            sizes[(im.height, im.width)] += 1
    grey = all(m in GREY_MODES for m in modes)
    mode = "L" if grey else "RGB"
    target = sizes.most_common(1)[0][0]
    xs = {split: [] for split in splits}
    ys = {split: [] for split in splits}
    for path, label, split in items:
        with Image.open(path) as im:
            im = to_mode(im, mode)
            if (im.height, im.width) != target:
                im = im.resize((target[1], target[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
        xs[split].append(arr[None] if grey else arr.transpose(2, 0, 1))
        ys[split].append(label)

    def stack(split: str):
        return torch.from_numpy(np.stack(xs[split])), torch.tensor(ys[split], dtype=torch.int64)

    if "all" in splits:
        x, y = stack("all")
        tr, va = holdout_split(y, len(classes), 0.1, 0)
        train_x, train_y, val_x, val_y = x[tr], y[tr], x[va], y[va]
    else:
        (train_x, train_y), (val_x, val_y) = stack("train"), stack("val")
    return Dataset(name=f"imagefolder:{root.name}", train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                   num_classes=len(classes), classes=classes, source=str(root))


# --- what each child process runs -----------------------------------------------------------


def child(mode: str, folder: str, cache_dir: str, hold: bool) -> None:
    """Load (``before``, ``after``) or not (``baseline``), touch every pixel, print a JSON line;
    with ``hold``, then wait for a line on stdin so that the parent can read /proc meanwhile."""
    from nasconv.data import load_dataset

    t0 = time.perf_counter()
    if mode == "before":
        ds = old_load_imagefolder(Path(folder))
    elif mode == "after":
        ds = load_dataset(f"imagefolder:{folder}", cache_dir=cache_dir)
    else:
        ds = None
    load_s = time.perf_counter() - t0
    checksum = 0
    if ds is not None:
        # Every pixel, as training over all the images would: per-class sums. numpy reduces in
        # small buffers, so touching the images allocates next to nothing (a large temporary
        # would stay in the heap and count as data).
        import numpy as np

        for x, y in ((ds.train_x, ds.train_y), (ds.val_x, ds.val_y)):
            xn, yn = x.numpy(), y.numpy()
            per_class = np.zeros(ds.num_classes, dtype=np.int64)
            for i in range(0, len(xn), 1024):
                sums = np.add.reduce(xn[i:i + 1024].reshape(len(xn[i:i + 1024]), -1), axis=1, dtype=np.int64)
                np.add.at(per_class, yn[i:i + 1024], sums)
            checksum += int(per_class @ np.arange(1, ds.num_classes + 1))
    n = 0 if ds is None else len(ds.train_y) + len(ds.val_y)
    nbytes = 0 if ds is None else ds.train_x.numel() + ds.val_x.numel()
    print(json.dumps({"load_s": load_s, "images": n, "bytes": nbytes, "checksum": checksum}), flush=True)
    if hold:
        sys.stdin.readline()


def _child_cmd(mode: str, folder: Path, cache_dir: Path, hold: bool) -> list[str]:
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import data_pipeline as b; "
            f"b.child({mode!r}, {str(folder)!r}, {str(cache_dir)!r}, {hold!r})")
    return [sys.executable, "-c", code]


def run_once(mode: str, folder: Path, cache_dir: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = subprocess.run(_child_cmd(mode, folder, cache_dir, False), cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = wall
    return res


def _proc_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key.lower() + "_kb"] = int(rest.split()[0])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out["rss_peak_kb"] = int(line.split()[1])
    return out


def memory(mode: str, n: int, folder: Path, cache_dir: Path) -> dict[str, Any]:
    """``n`` concurrent ``mode`` processes, measured once all have loaded and touched everything."""
    procs = [subprocess.Popen(_child_cmd(mode, folder, cache_dir, True), cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        results = []
        for p in procs:
            line = p.stdout.readline()
            if not line:
                raise SystemExit(f"{mode} x{n} failed: {p.stderr.read()[-2000:]}")
            results.append(json.loads(line))
        per = [_proc_kb(p.pid) for p in procs]
    finally:
        for p in procs:
            try:
                p.stdin.write("\n")
                p.stdin.close()
            except OSError:
                pass
            p.wait(timeout=120)
    return {"mode": mode, "procs": n, "pss_kb": sum(r["pss_kb"] for r in per), "rss_kb": sum(r["rss_kb"] for r in per),
            "rss_peak_kb_max": max(r["rss_peak_kb"] for r in per), "per_process": per,
            "load_s": [r["load_s"] for r in results], "checksums": sorted({r["checksum"] for r in results}),
            "bytes": results[0]["bytes"]}


# --- the folder ------------------------------------------------------------------------------


def find_folder(folder: Path) -> Path:
    if (folder / "train").is_dir():
        return folder
    if folder == DEFAULT_FOLDER and ARCHIVE.is_file():
        print(f"extracting {ARCHIVE} to {folder.parent.parent} ...", file=sys.stderr)
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(folder.parent.parent, filter="data")
        if (folder / "train").is_dir():
            return folder
    raise SystemExit(f"no image folder at {folder} (want train/<class>/ and test/<class>/); "
                     f"extract {ARCHIVE} (tar -xzf ... -C /tmp) or pass --folder")


def quick_copy(folder: Path, dest: Path, per_class: dict[str, int]) -> Path:
    """The first ``per_class[split]`` files of each class (all of them when there are fewer)."""
    for split, k in per_class.items():
        for cls in sorted(p for p in (folder / split).iterdir() if p.is_dir()):
            (dest / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:k]:
                shutil.copy2(f, dest / split / cls.name / f.name)
    return dest


def cpu_model() -> str:
    sys.path.insert(0, str(HERE))
    from _common import cpu_model as cm

    return cm()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="image folder with train/ and test/")
    ap.add_argument("--repeats", type=int, default=None, help="fresh processes per timing (default 3; --quick 1)")
    ap.add_argument("--procs", type=int, default=4, help="concurrent processes of the memory test (default 4)")
    ap.add_argument("--quick", action="store_true", help="2,000 images, one run each; files only with --out")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    sys.path.insert(0, str(HERE))
    from _common import git_revision, load_avg

    work = Path(tempfile.mkdtemp(prefix="nasconv-data-bench-"))
    try:
        folder = find_folder(args.folder)
        if args.quick:
            folder = quick_copy(folder, work / "quick", {"train": 150, "test": 50})
        rows: dict[str, list[dict[str, Any]]] = {"before": [], "first": [], "cached": []}
        for r in range(repeats):  # interleaved, so that machine load hits them alike
            rows["before"].append(run_once("before", folder, work / "unused"))
            cache = work / f"cache{r}"
            rows["first"].append(run_once("after", folder, cache))
            rows["cached"].append(run_once("after", folder, cache))
            print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]['load_s']:.2f} s" for k, v in rows.items()),
                  file=sys.stderr)
        cache = work / "cache0"
        mem = {f"{mode}x{n}": memory(mode, n, folder, cache)
               for n in sorted({1, args.procs}) for mode in ("baseline", "before", "after")}
        print("memory measured", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(r["load_s"] for r in v) for k, v in rows.items()}
    med_proc = {k: statistics.median(r["process_s"] for r in v) for k, v in rows.items()}
    one_copy_kb = rows["cached"][0]["bytes"] / 1024
    data_kb = {k: m["pss_kb"] - mem[f"baseline{k[k.index('x'):]}"]["pss_kb"] for k, m in mem.items()
               if not k.startswith("baseline")}
    speedup = med["before"] / med["cached"]
    ratio = data_kb[f"afterx{args.procs}"] / one_copy_kb
    same = len({c for k, m in mem.items() if not k.startswith("baseline") for c in m["checksums"]}) == 1
    result = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_model(), "cores": os.cpu_count(),
        "revision": git_revision(), "load_avg": load_avg(), "python": sys.version.split()[0],
        "command": "python benchmarks/data_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "folder": str(args.folder), "quick": args.quick, "images": rows["cached"][0]["images"],
        "one_copy_bytes": rows["cached"][0]["bytes"], "repeats": repeats, "timings": rows,
        "median_load_s": med, "median_process_s": med_proc, "memory": mem, "data_pss_kb": data_kb,
        "cached_speedup": speedup, "data_pss_ratio": ratio, "checksums_agree": same,
        "goals": {"cached_speedup_min": SPEEDUP_GOAL, "data_pss_ratio_max": MEMORY_GOAL,
                  "speedup_met": speedup >= SPEEDUP_GOAL, "memory_met": ratio <= MEMORY_GOAL},
    }
    text = report(result, args.procs)
    print(text)
    if args.out is not None or not args.quick:
        out = args.out or HERE / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "data_pipeline.md").write_text(text)
        (out / "data_pipeline.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def report(res: dict[str, Any], procs: int) -> str:
    med, proc, mem, data_kb = res["median_load_s"], res["median_process_s"], res["memory"], res["data_pss_kb"]
    mb = 1 / 1024
    one = res["one_copy_bytes"] / 2**20
    lines = [
        "# Data pipeline: decode in every process (before) vs the memory-mapped cache (after)",
        "",
        f"{res['date']}, {res['cpu']} ({res['cores']} cores), Python {res['python']}, revision {res['revision']}, "
        f"load average {res['load_avg']}, `{res['command']}`",
        "",
        f"{res['images']:,} images from `{res['folder']}`{' (quick: a 2,000-image copy)' if res['quick'] else ''}, "
        f"one copy = {one:.1f} MiB. Every number from fresh processes; times are medians of {res['repeats']}.",
        "",
        "| load | load_dataset, s | whole process, s | vs before |",
        "|---|---:|---:|---:|",
    ]
    for key, what in (("before", "before: one process decodes into memory"),
                      ("first", "after, first load: parallel decode into the cache"),
                      ("cached", "after, cached: memory map, new process")):
        lines.append(f"| {what} | {med[key]:.3f} | {proc[key]:.2f} | {med['before'] / med[key]:.1f}x |")
    lines += ["", "| memory | processes | RSS sum, MiB | peak RSS of one, MiB | PSS sum, MiB | "
                  "data PSS (minus baseline), MiB | data / one copy |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for key, m in mem.items():
        d = data_kb.get(key)
        lines.append(f"| {m['mode']} | {m['procs']} | {m['rss_kb'] * mb:.0f} | {m['rss_peak_kb_max'] * mb:.0f} | "
                     f"{m['pss_kb'] * mb:.0f} | {'' if d is None else f'{d * mb:.0f}'} | "
                     f"{'' if d is None else f'{d * mb / one:.2f}x'} |")
    goals = res["goals"]
    lines += [
        "",
        f"- Cached load vs before: **{res['cached_speedup']:.0f}x** faster (goal >= {goals['cached_speedup_min']:.0f}x): "
        f"{'met' if goals['speedup_met'] else 'NOT met'}.",
        f"- {procs} processes' data PSS: **{res['data_pss_ratio']:.2f}x** one copy (goal <= {goals['data_pss_ratio_max']}x): "
        f"{'met' if goals['memory_met'] else 'NOT met'}.",
        f"- Every process saw the same pixels (per-class sums agree): {'yes' if res['checksums_agree'] else 'NO'}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
