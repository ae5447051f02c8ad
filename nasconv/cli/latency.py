"""``nasconv latency profile|predict``: make a device's latency lookup table for a space, and
predict an architecture's latency from it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from nasconv.cli._common import MAX_WORKERS, device_flag, int_in, print_json
from nasconv.errors import Terminated, UsageError


def add_parser(sub: Any) -> None:
    from nasconv.storage import DEFAULT_STORAGE

    q = sub.add_parser("latency", help="per-device latency model: profile a device for a space, predict latency")
    actions = q.add_subparsers(dest="action", metavar="ACTION", parser_class=type(q))
    actions.required = True
    p = actions.add_parser("profile", help="measure every distinct block of a space on this device (resumes)")
    _common(p, DEFAULT_STORAGE)
    p.add_argument("--device", type=device_flag, default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--networks", type=int_in(1, 1000), default=None,
                   help="whole networks measured to calibrate the block sum (default 10, at most 1000)")
    p.add_argument("--recalibrate", action="store_true", help="fit the calibration again even when nothing is new")
    p.add_argument("--quick", action="store_true", help="fewer repeats per block (tests, smoke runs)")
    p.add_argument("--json", action="store_true", help="the report as JSON (no progress bar)")
    r = actions.add_parser("predict", help="predicted latency of an architecture from the device's table")
    _common(r, DEFAULT_STORAGE)
    r.add_argument("--device", type=device_flag, default="cpu", help="cpu (default), cuda or cuda:N: whose table "
                   "is read")
    r.add_argument("--arch", default="baseline", metavar="FILE.json|baseline")
    r.add_argument("--now", action="store_true",
                   help="time a few of the table's own calibration networks again first and scale the prediction to "
                        "the device's speed now, as a search does (a second or two on a CPU)")
    r.add_argument("--json", action="store_true")


def _common(q: argparse.ArgumentParser, default_storage: str) -> None:
    from nasconv.evaluate import MAX_BATCH

    q.add_argument("--space", required=True, metavar="NAME|PATH")
    q.add_argument("--storage", default=default_storage, help=f"SQLAlchemy URL (default {default_storage})")
    q.add_argument("--threads", type=int_in(1, MAX_WORKERS), default=None,
                   help=f"torch threads (default: torch's, the cores; at most {MAX_WORKERS})")
    q.add_argument("--batch", type=int_in(1, MAX_BATCH), default=1,
                   help=f"batch size of the measurement (default 1, at most {MAX_BATCH})")


def run(args: argparse.Namespace) -> int:
    from nasconv.latency import LatencyTable, current_setting, open_tables
    from nasconv.spaces import load_arch, load_space

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if not 1 <= args.batch <= 1024:
        raise UsageError(f"--batch must be in [1, 1024], got {args.batch}")
    space = load_space(args.space)
    arch = load_arch(space, args.arch) if args.action == "predict" else None
    setting = current_setting(args.device, threads=args.threads, batch=args.batch)
    tables = open_tables(args.storage, readonly=arch is not None)
    try:
        table = LatencyTable(tables, args.storage)
        if arch is None:
            return _profile(args, space, table, setting)
        return _predict(args, space, arch, table, setting)
    finally:
        tables.dispose()


def _profile(args: argparse.Namespace, space: Any, table: Any, setting: Any) -> int:
    from tqdm import tqdm

    from nasconv.latency import (
        CALIBRATION_NETWORKS,
        NETWORK_ROUNDS,
        PART_ROUNDS,
        Repeats,
        calibration_archs,
        network_key,
        profile_space,
        round_key,
        space_parts,
    )

    if args.networks is not None and not 1 <= args.networks <= 1000:
        raise UsageError(f"--networks must be in [1, 1000], got {args.networks}")
    quick = Repeats(warmup=2, min_repeats=5, max_repeats=20, max_time_s=0.5)
    bar: Any = None

    def progress(i: int, total: int, key: str) -> None:
        nonlocal bar
        if bar is None and sys.stderr.isatty() and not args.json:
            bar = tqdm(total=total, file=sys.stderr, unit="part", desc=f"profiling {space.name}")
        if bar is not None:
            bar.update(1)

    t0 = time.perf_counter()
    try:
        rep = profile_space(space, table, setting, device=args.device, **(
                                {"repeats": quick, "network_repeats": quick} if args.quick else {}),
                            networks=args.networks or CALIBRATION_NETWORKS, recalibrate=args.recalibrate,
                            progress=progress)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (Terminated): every finished row is stored
        if bar is not None:
            bar.close()
        keys = {p.key for p in space_parts(space)}
        good = table.good_keys(setting)
        timed = sum(1 for k in keys for i in range(PART_ROUNDS) if round_key(k, i) in good)
        nets = [network_key(a) for a in calibration_archs(space, args.networks or CALIBRATION_NETWORKS)]
        nets_timed = sum(1 for k in nets for i in range(NETWORK_ROUNDS) if round_key(k, i) in good)
        by = f" by {exc.signame}" if isinstance(exc, Terminated) else ""
        print(f"nasconv: interrupted{by} after {time.perf_counter() - t0:.0f} s: {timed} of the "
              f"{PART_ROUNDS * len(keys)} timings of the {len(keys)} parts of {space.name} ({PART_ROUNDS} each) are "
              f"stored, and {nets_timed} of the {NETWORK_ROUNDS * len(nets)} of its {len(nets)} whole networks; the "
              f"same command continues where this one stopped", file=sys.stderr)
        return exc.exit_code if isinstance(exc, Terminated) else 130
    if bar is not None:
        bar.close()
    if args.json:
        print_json(rep.to_dict())
        return 0
    cal = rep.calibration
    print(f"{space.name} on {setting.describe()}: {rep.parts} parts, {rep.measured} measured now ({rep.timings} "
          f"timings), {rep.skipped} already in {table.url}; {rep.networks_measured} whole network(s) measured, "
          f"{rep.seconds:.0f} s")
    if cal is not None:
        print(f"calibration: measured = {cal.intercept_ms:.3g} ms + {cal.slope:.3g} x block sum over {cal.n} "
              f"networks, relative residual sd {100 * cal.rel_residual_sd:.1f}%; one timing's own spread "
              f"{100 * cal.retest_rel_sd:.1f}%; a prediction's 95% interval +-{100 * cal.rel_half_width():.0f}%")
    return 0


def _predict(args: argparse.Namespace, space: Any, arch: Any, table: Any, setting: Any) -> int:
    from nasconv.latency import corrected, load_model

    model = load_model(table, space, setting)
    drift = None
    if args.now:  # scaled whenever measured: the user asked for the speed now
        model, drift = corrected(model, table, args.device, tolerance=0.0)
    p = model.predict(arch)
    out = {"space": space.name, "arch_hash": arch.arch_hash, **p.to_dict(), "setting": setting.where(),
           "drift": drift}
    if args.json:
        print_json(out)
        return 0
    print(f"{space.name} {arch.arch_hash}: {p.latency_ms:.3g} ms predicted (95% interval {p.low_ms:.3g}-"
          f"{p.high_ms:.3g} ms) on {setting.describe()}")
    if args.now:
        print(f"the device times its table's networks {drift:.2f}x what it did when the table was made; the prediction "
              "is scaled by that" if drift is not None else "the table holds no whole networks to time again: the "
              "prediction is the table's, unscaled")
    return 0
