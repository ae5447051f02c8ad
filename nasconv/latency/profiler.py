"""Profiling a device for a space: every distinct part timed in :data:`PART_ROUNDS` passes over
the space's parts (median and IQR over enough repeats each time), each timing committed as soon as
it is measured (under ``<part>#<round>``), so that an interrupted run resumes where it stopped, and
the middle of a part's rounds kept as its row; whole networks timed in rounds between the passes
(stored like parts, under ``net:<hash>``), and the block sum calibrated against them."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from nasconv.arch import ArchSpec
from nasconv.build import build_model
from nasconv.latency.blocks import build_part, space_parts
from nasconv.latency.model import Calibration, LatencyModel, fit_calibration, retest_spread
from nasconv.latency.table import DeviceSetting, LatencyTable
from nasconv.profile import LatencyResult, measure_latency, resolve_device
from nasconv.spaces import SearchSpace


@dataclass(frozen=True)
class Repeats:
    """How carefully one part or network is timed (:func:`nasconv.profile.measure_latency`): until
    IQR/median < ``target_rel_iqr`` after ``min_repeats``, or a cap. The defaults are one round of
    a part's: a space has hundreds (on a busy 2-core machine the 5% target is often out of reach,
    and the caps keep resnet20's 898 parts, 3 rounds each, to a few minutes)."""

    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 50
    target_rel_iqr: float = 0.05
    max_time_s: float = 0.5


#: how the calibration networks are timed: few, and each worth more care
NETWORK_REPEATS = Repeats(warmup=3, min_repeats=15, max_repeats=200, target_rel_iqr=0.03, max_time_s=3.0)


#: each part is timed once in each of this many passes over the space's parts (each pass in its
#: own shuffled order) and the middle timing kept. On this project's shared VMs a machine's speed
#: wanders by tens of percent within minutes: two fresh profiles of resnet20 minutes apart, the
#: parts timed once each in the space's order, predicted the same 50 networks a median 7.7% apart
#: (benchmarks/results/latency_model-resnet20-rounds.md, "before"; 12% in an earlier run). Timed
#: once, a part keeps whatever the machine did during its second, and the parts of one stage,
#: timed together, share it: one pass's burst or slow minute moves one of three timings, in no
#: particular stage
PART_ROUNDS = 3

#: whole networks the block sum is calibrated on: the baseline and random architectures
CALIBRATION_NETWORKS = 10
#: each calibration network is timed this many times, spread over the profiling run, and the
#: median of its rounds' medians kept: on a shared machine a network timed during another process's
#: burst came out 1.5-2.5x slower (seen while making 71c9d98), and the middle of 3 rounds
#: drops one such round; the fastest round would drop it too, but lands below what one careful
#: measurement gives (5-8% on resnet18 here), and a measurement is what the model predicts
NETWORK_ROUNDS = 3


@dataclass
class ProfileReport:
    space: str
    setting: DeviceSetting
    parts: int
    measured: int
    skipped: int
    networks_measured: int
    #: part timings taken by this run (a part is complete after :data:`PART_ROUNDS` of them)
    timings: int = 0
    calibration: Calibration | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"space": self.space, "setting": self.setting.where(), "parts": self.parts, "measured": self.measured,
                "skipped": self.skipped, "networks_measured": self.networks_measured, "timings": self.timings,
                "calibration": self.calibration.to_dict() if self.calibration else None,
                "seconds": round(self.seconds, 2)}


def network_key(arch: ArchSpec) -> str:
    return f"net:{arch.arch_hash}"


def round_key(key: str, i: int) -> str:
    """The row of a part's timing in pass ``i`` (0-based)."""
    return f"{key}#{i + 1}"


def calibration_archs(space: SearchSpace, n: int, seed: int = 0) -> list[ArchSpec]:
    """The baseline and ``n - 1`` distinct random architectures (fewer when the space is smaller)."""
    rng = random.Random(seed)
    out = {space.baseline().arch_hash: space.baseline()}
    tries = 0
    while len(out) < n and tries < 50 * n:
        a = space.sample(rng)
        out.setdefault(a.arch_hash, a)
        tries += 1
    return list(out.values())


def measure_network(arch: ArchSpec, setting: DeviceSetting, device: str, repeats: Repeats) -> LatencyResult:
    """``arch``'s whole-network latency, timed with ``setting``'s threads and batch."""
    torch.manual_seed(0)
    model = build_model(arch)
    before = torch.get_num_threads()
    torch.set_num_threads(setting.threads)
    try:
        return _measure(model, arch.in_channels, arch.resolution, setting, device, repeats)
    finally:
        torch.set_num_threads(before)


def _measure(module: torch.nn.Module, in_channels: int, size: int, setting: DeviceSetting, device: str,
             r: Repeats) -> LatencyResult:
    return measure_latency(module, in_channels=in_channels, resolution=size, batch_size=setting.batch,
                           device=resolve_device(device), warmup=r.warmup, min_repeats=r.min_repeats,
                           max_repeats=r.max_repeats, target_rel_iqr=r.target_rel_iqr, max_time_s=r.max_time_s)


def profile_space(space: SearchSpace, table: LatencyTable, setting: DeviceSetting, *, device: str = "cpu",
                  repeats: Repeats = Repeats(), network_repeats: Repeats = NETWORK_REPEATS,
                  networks: int = CALIBRATION_NETWORKS, rounds: int = PART_ROUNDS, seed: int = 0,
                  recalibrate: bool = False,
                  progress: Callable[[int, int, str], None] | None = None) -> ProfileReport:
    """Measure what ``table`` lacks for ``space`` under ``setting`` (in this process, with
    ``setting.threads`` torch threads) and store the calibration. ``progress(done, total, key)``
    after each timing. A KeyboardInterrupt leaves every finished timing stored."""
    t0 = time.perf_counter()
    parts = space_parts(space)
    archs = calibration_archs(space, networks, seed)
    have = table.good_keys(setting)
    todo = [p for p in parts if p.key not in have]
    passes = [[p for p in todo if round_key(p.key, i) not in have] for i in range(rounds)]
    rng = random.Random(seed)
    for ps in passes:
        rng.shuffle(ps)
    # a network is complete with all its rounds stored (or, from a table made before rounds were
    # stored, with its row alone)
    net_keys = {network_key(a): [round_key(network_key(a), i) for i in range(NETWORK_ROUNDS)] for a in archs}
    legacy = {k for k, rks in net_keys.items() if k in have and not any(rk in have for rk in rks)}
    net_passes = [[a for a in archs if network_key(a) not in legacy and net_keys[network_key(a)][i] not in have]
                  for i in range(NETWORK_ROUNDS)]
    report = ProfileReport(space.name, setting, len(parts), 0, len(parts) - len(todo), 0)
    total = sum(map(len, passes)) + sum(map(len, net_passes))
    done = 0
    timed_nets: set[str] = set()

    def step(key: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, key)

    def time_networks(i: int) -> None:
        for arch in net_passes[i]:
            key = network_key(arch)
            table.put(setting, net_keys[key][i], measure_network(arch, setting, device, network_repeats))
            table.keep_middle(setting, key, net_keys[key][:i + 1])  # the middle so far (of 2: the faster)
            timed_nets.add(key)
            step(key)

    threads_before = torch.get_num_threads()
    torch.set_num_threads(setting.threads)
    try:
        torch.manual_seed(0)
        for i in range(max(rounds, NETWORK_ROUNDS)):  # the networks' rounds between the parts' passes
            if i < NETWORK_ROUNDS:
                time_networks(i)
            for part in passes[i] if i < rounds else ():
                res = _measure(build_part(part), part.in_channels, part.size, setting, device, repeats)
                table.put(setting, round_key(part.key, i), res)
                report.timings += 1
                step(part.key)
        for part in todo:
            table.keep_middle(setting, part.key, [round_key(part.key, i) for i in range(rounds)])
            report.measured += 1
        for key, rks in net_keys.items():
            if key not in have and key not in timed_nets:  # every round stored by an interrupted run, no row yet
                table.keep_middle(setting, key, rks)
    finally:
        report.networks_measured = len(timed_nets)
        torch.set_num_threads(threads_before)
    if report.measured or report.networks_measured or recalibrate or table.calibration(setting, space.name) is None:
        report.calibration = calibrate(space, table, setting, archs)
    report.seconds = time.perf_counter() - t0
    return report


def calibrate(space: SearchSpace, table: LatencyTable, setting: DeviceSetting, archs: list[ArchSpec]) -> Calibration:
    """Fit the block sum to the stored whole-network medians of ``archs`` and store the fit."""
    keys = [p.key for p in space_parts(space)]
    blocks = table.blocks(setting, keys + [network_key(a) for a in archs], space=space.name)
    identity = LatencyModel(space, setting, blocks, Calibration(0.0, 1.0, 1, 0.0))
    points = [(identity.block_sum(a)[0], blocks[network_key(a)].median_ms) for a in archs]
    rounds = table.medians(setting, [round_key(network_key(a), i) for a in archs for i in range(NETWORK_ROUNDS)])
    per_net = [[rounds[k] for i in range(NETWORK_ROUNDS) if (k := round_key(network_key(a), i)) in rounds]
               for a in archs]
    cal = replace(fit_calibration(points), retest_rel_sd=retest_spread(per_net))
    table.put_calibration(setting, space.name, space.content_hash, cal.to_dict())
    return cal
