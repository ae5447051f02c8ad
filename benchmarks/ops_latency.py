"""CPU forward latency of every registered operator at ResNet-50's four 3x3 shapes.

    python benchmarks/ops_latency.py [--threads 2] [--repeats 7] [--quick] [--ops a,b] [--out DIR]

For each operator (registry defaults, plus gc G=2/4/8, tbc B=2/4/8 and tgc B=2 with G=2/4 so
that TBC/TGC meet gc at equal MACs) at 64x56x56, 128x28x28, 256x14x14 and 512x7x7 (c_in = c_out,
stride 1) and batch 1 and 32, it reports params and MACs (analytic, per image), the median and
IQR of the forward latency (eval mode, ``torch.inference_mode``, fixed thread count), the latency
relative to ``standard`` and the MAC efficiency::

    MAC efficiency = (standard latency * op MACs / standard MACs) / op latency

(1.0 = as fast per MAC as a plain convolution). Three reference rows are implemented here, not
in nasconv: ``tbc-naive-loop`` (a Python loop over the B blocks with the module's shared
weight) and ``condconv-naive-loop`` / ``dynconv-naive-loop`` (mix each sample's kernel, one
``F.conv2d`` per sample, same weights and routing as the module). Their outputs are checked
against the batched module (allclose) at every shape and batch they are timed at. CondConv,
DynConv, their loops and ``standard`` are also timed at ResNet-20's (CIFAR) shapes 16x32x32,
32x16x16 and 64x8x8 at the largest batch: where one sample's convolution is too small to keep
the cores busy, which is where batching the samples pays.

Writes ``ops_latency.md`` and ``ops_latency.json`` to ``--out`` (default benchmarks/results);
``--quick`` is a smoke run (< 1 min) that writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from _common import OtherCpu, cpu_model, git_revision, keep_freed_memory
from torch import nn

from nasconv.ops import create_op, get_op, list_ops, op_cost
from nasconv.ops.dynamic import CondConv2d, DynamicConv2d
from nasconv.ops.tied import TiedBlockConv2d

#: ResNet-50's 3x3 convolutions: (channels, height = width) of stages conv2_x .. conv5_x
SHAPES: tuple[tuple[int, int], ...] = ((64, 56), (128, 28), (256, 14), (512, 7))
BATCHES: tuple[int, ...] = (1, 32)
#: ResNet-20's (CIFAR) 3x3 shapes: CondConv/DynConv and standard only, at the largest batch
SMALL_SHAPES: tuple[tuple[int, int], ...] = ((16, 32), (32, 16), (64, 8))
KERNEL = 3

#: settings beyond the registry default, so TBC/TGC meet gc at equal MACs
#: (tbc B has the MACs of gc G=B; tgc B,G those of gc G=B*G)
EXTRA_HYPER: dict[str, tuple[dict[str, Any], ...]] = {
    "gc": ({"groups": 2}, {"groups": 4}, {"groups": 8}),
    "tbc": ({"blocks": 2}, {"blocks": 4}, {"blocks": 8}),
    "tgc": ({"blocks": 2, "groups": 2}, {"blocks": 2, "groups": 4}),
}
#: naive reference rows: name -> the operator whose weights (and hyper settings) they reuse
NAIVE_OF = {"tbc-naive-loop": "tbc", "condconv-naive-loop": "condconv", "dynconv-naive-loop": "dynconv"}

#: "no slower" allows this much for timing noise (ratio <= 1.05)
NOISE_TOLERANCE = 1.05
#: the per-sample-loop speed-up the batched CondConv/DynConv forward should reach at batch 32
TARGET_SPEEDUP = 5.0
#: CPU (in cores) other processes may use during a cell before the findings flag it
OTHER_CPU_WARN = 0.2
#: pause before re-timing a cell that other processes competed with
RETRY_WAIT_S = 20.0
#: allclose tolerances for the naive-vs-batched output check (float32, different conv algorithms)
CHECK_RTOL, CHECK_ATOL = 1e-4, 1e-4


# --- the naive reference forms --------------------------------------------------------------


class TiedBlockLoop(nn.Module):
    """TBC/TGC as a Python loop over the B channel blocks, with the module's one shared weight."""

    def __init__(self, tied: TiedBlockConv2d) -> None:
        super().__init__()
        self.tied = tied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tied
        cb = t.in_channels // t.blocks
        return torch.cat([F.conv2d(x[:, b * cb:(b + 1) * cb], t.weight, None, t.stride, t.kernel_size // 2, 1,
                                   t.groups) for b in range(t.blocks)], dim=1)


class ExpertLoop(nn.Module):
    """CondConv/DynConv as a per-sample loop: mix the sample's kernel, one ``F.conv2d`` per sample.

    Routing (pooled input -> (N, K) mixing weights) is the module's own and stays batched: it
    is tiny, and the point of comparison is the convolution.
    """

    def __init__(self, experts: CondConv2d | DynamicConv2d) -> None:
        super().__init__()
        self.experts = experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.experts
        mix = m.routing(x.mean((2, 3)))
        bank = m.weight.reshape(m.experts, -1)
        shape = (m.out_channels, m.in_channels, m.kernel_size, m.kernel_size)
        return torch.cat([F.conv2d(x[i:i + 1], (mix[i] @ bank).reshape(shape), None, m.stride, m.kernel_size // 2)
                          for i in range(x.shape[0])], dim=0)


# --- what is timed --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row family: an operator (or a naive form of one) with fixed hyperparameters."""

    label: str  # row name: registry name or "<op>-naive-loop"
    op: str  # registry operator that gives the cost (and, for naive rows, the weights)
    hyper: dict[str, Any] = field(default_factory=dict)

    @property
    def naive(self) -> bool:
        return self.label != self.op

    @property
    def hyper_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.hyper.items()) or "-"


def build_cases(ops: list[str]) -> list[Case]:
    cases: list[Case] = []
    for op in ops:
        spec = get_op(op)
        default = {k: h.default for k, h in spec.hyper.items()}
        settings = [default] + [h for h in EXTRA_HYPER.get(op, ()) if {**default, **h} != default]
        cases += [Case(op, op, {**default, **h}) for h in settings]
    for label, op in NAIVE_OF.items():
        if op in ops:
            cases += [Case(label, c.op, c.hyper) for c in cases if c.label == op and not c.naive]
    return cases


def wrap_naive(module: nn.Module) -> nn.Module:
    if isinstance(module, TiedBlockConv2d):
        return TiedBlockLoop(module)
    if isinstance(module, (CondConv2d, DynamicConv2d)):
        return ExpertLoop(module)
    raise TypeError(f"no naive form for {type(module).__name__}")


def time_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, min_repeats: int,
                 min_time_s: float, max_repeats: int, warmup_s: float) -> list[float]:
    """Forward latencies in ms: warm up, then at least ``min_repeats`` runs and ``min_time_s`` seconds."""
    with torch.inference_mode():
        start = time.perf_counter()
        for i in range(1000):  # >= 2 warm-up runs: the first one allocates and picks algorithms
            fn(x)
            if i >= 1 and time.perf_counter() - start >= warmup_s:
                break
        times: list[float] = []
        spent = 0.0
        while len(times) < min_repeats or (spent < min_time_s and len(times) < max_repeats):
            t0 = time.perf_counter()
            fn(x)
            dt = time.perf_counter() - t0
            times.append(dt * 1e3)
            spent += dt
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3


# --- the run --------------------------------------------------------------------------------


def run(cases: list[Case], *, shapes: tuple[tuple[int, int], ...], batches: tuple[int, ...], rounds: int,
        min_repeats: int, min_time_s: float, max_repeats: int, warmup_s: float, retry_busy: int,
        log: Callable[[str], None]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    per_round_repeats = math.ceil(min_repeats / rounds)
    other_cpu = OtherCpu()
    for channels, size in shapes:
        torch.manual_seed(0)
        modules: dict[tuple[str, str], nn.Module] = {}
        for case in cases:
            key = (case.op, json.dumps(case.hyper, sort_keys=True))
            if key not in modules:
                modules[key] = create_op(case.op, channels, channels, KERNEL, 1, **case.hyper).eval()
        for batch in batches:
            x = torch.randn(batch, channels, size, size)
            fns: list[nn.Module] = []
            for case in cases:
                module = modules[(case.op, json.dumps(case.hyper, sort_keys=True))]
                if case.naive:
                    naive = wrap_naive(module).eval()
                    with torch.inference_mode():
                        ref, got = module(x), naive(x)
                    ok = ref.shape == got.shape and torch.allclose(ref, got, rtol=CHECK_RTOL, atol=CHECK_ATOL)
                    diff = float((ref - got).abs().max()) if ref.shape == got.shape else float("inf")
                    checks.append({"row": case.label, "hyper": case.hyper, "channels": channels, "size": size,
                                   "batch": batch, "allclose": bool(ok), "max_abs_diff": diff})
                    log(f"  check {case.label} [{case.hyper_text}] {channels}x{size}x{size} b{batch}: "
                        f"{'allclose' if ok else 'MISMATCH'} (max |diff| {diff:.2e})")
                    del ref, got
                    module = naive
                fns.append(module)
            # re-time a cell that competed with other processes (shared machine); keep the cleanest try
            best: tuple[float, list[list[float]]] | None = None
            for attempt in range(1 + retry_busy):
                if attempt:
                    log(f"  other processes used {best[0]:.2f} cores: waiting {RETRY_WAIT_S:.0f} s, "
                        f"re-timing {channels}x{size}x{size} b{batch} (retry {attempt}/{retry_busy})")
                    time.sleep(RETRY_WAIT_S)
                other_cpu.lap()
                samples: list[list[float]] = [[] for _ in cases]
                # rounds interleave the rows so a burst of background load hits all of them alike
                for _ in range(rounds):
                    for i, fn in enumerate(fns):
                        samples[i] += time_forward(fn, x, min_repeats=per_round_repeats,
                                                   min_time_s=min_time_s / rounds,
                                                   max_repeats=max(per_round_repeats, max_repeats // rounds),
                                                   warmup_s=warmup_s)
                other = other_cpu.lap()
                if best is None or not other >= best[0]:  # nan (no /proc/stat) counts as clean
                    best = (other, samples)
                if not best[0] > OTHER_CPU_WARN:
                    break
            other, samples = best
            for case, times in zip(cases, samples):
                cost = op_cost(case.op, channels, channels, KERNEL, size, size, 1, **case.hyper)
                q1, med, q3 = quartiles(times)
                rows.append({"op": case.label, "hyper": case.hyper, "naive": case.naive, "channels": channels,
                             "size": size, "batch": batch, "params": cost.params, "macs": cost.macs,
                             "latency_ms": med, "iqr_ms": q3 - q1, "q1_ms": q1, "q3_ms": q3, "runs": len(times)})
            base = next((r for r in rows[-len(cases):] if r["op"] == "standard"), None)
            for r in rows[-len(cases):]:
                if base is not None:
                    r["vs_standard"] = r["latency_ms"] / base["latency_ms"]
                    r["mac_efficiency"] = base["latency_ms"] * (r["macs"] / base["macs"]) / r["latency_ms"]
                log(f"  {channels}x{size}x{size} b{batch} {r['op']:<20} {Case(r['op'], r['op'], r['hyper']).hyper_text:<40}"
                    f" {r['latency_ms']:9.3f} ms  (IQR {r['iqr_ms']:.3f}, n={r['runs']})")
            for r in rows[-len(cases):]:
                r["other_cpu_cores"] = other
            del x, fns
        del modules
    return rows, checks


# --- findings, computed from the rows -------------------------------------------------------


def _find(rows: list[dict[str, Any]], op: str, hyper: dict[str, Any], channels: int, batch: int,
          size: int | None = None) -> dict | None:
    for r in rows:
        if r["op"] == op and r["channels"] == channels and r["batch"] == batch and size in (None, r["size"]) and \
                all(r["hyper"].get(k) == v for k, v in hyper.items()):
            return r
    return None


def _shape(channels: int, size: int) -> str:
    return f"{channels}x{size}x{size}"


def _busy(*rows: dict[str, Any]) -> bool:
    """Whether other processes competed with the timing of any of these rows' cells."""
    return any(r.get("other_cpu_cores", 0.0) > OTHER_CPU_WARN for r in rows)


def _verdict(ok: list[bool]) -> str:
    return "holds everywhere" if all(ok) else ("does not hold anywhere" if not any(ok) else "holds only in part")


def findings(rows: list[dict[str, Any]], checks: list[dict[str, Any]],
             shapes: tuple[tuple[int, int], ...], batches: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
    """The Findings block (Markdown) and its data, computed from the rows.

    Cells timed while other processes used more than ``OTHER_CPU_WARN`` of a core are shown with
    a dagger and left out of the verdicts: their ratios say more about the neighbours than the ops.
    """
    lines: list[str] = []
    data: dict[str, Any] = {"tied_vs_gc": [], "expert_loop_speedup": [], "tbc_loop_speedup": []}
    dagger = f"† = timed while other processes used > {OTHER_CPU_WARN} of a core; left out of the verdict"

    # (1) TBC / TGC against gc at equal MACs
    pairs = [("tbc", {"blocks": b}, f"tbc B={b}", {"groups": b}) for b in (2, 4, 8)]
    pairs += [("tgc", {"blocks": 2, "groups": g}, f"tgc B=2,G={g}", {"groups": 2 * g}) for g in (2, 4)]
    cols = [(c, s, b) for b in batches for c, s in shapes]
    lines += [f"**(1) TBC/TGC vs gc at equal MACs** — latency ratio op / gc (< 1 = faster than gc); \"no slower\" "
              f"means ratio <= {NOISE_TOLERANCE:.2f} (5% allowed for timing noise); bold = slower; {dagger}.", "",
              "| pair | " + " | ".join(f"{_shape(c, s)} b{b}" for c, s, b in cols) + " |",
              "|---|" + "---:|" * len(cols)]
    for op, hyper, name, gc_hyper in pairs:
        cells = []
        for c, s, b in cols:
            r, g = _find(rows, op, hyper, c, b, s), _find(rows, "gc", gc_hyper, c, b, s)
            if r is None or g is None:
                cells.append("n/a")
                continue
            if r["macs"] != g["macs"]:  # the pairing rests on this; say so loudly if it ever breaks
                cells.append(f"MACs differ ({r['macs']} vs {g['macs']})")
                continue
            ratio = r["latency_ms"] / g["latency_ms"]
            e = {"pair": name, "op": op, "hyper": hyper, "gc_groups": gc_hyper["groups"], "channels": c, "size": s,
                 "batch": b, "ratio": ratio, "no_slower": ratio <= NOISE_TOLERANCE, "busy": _busy(r, g)}
            data["tied_vs_gc"].append(e)
            text = f"{ratio:.2f}" if e["no_slower"] else f"**{ratio:.2f}**"
            cells.append(text + (" †" if e["busy"] else ""))
        lines.append(f"| {name} / gc G={gc_hyper['groups']} | " + " | ".join(cells) + " |")
    lines.append("")
    clean = [e for e in data["tied_vs_gc"] if not e["busy"]]
    if clean:
        held = [e for e in clean if e["no_slower"]]
        left_out = len(data["tied_vs_gc"]) - len(clean)

        def count(sel: Callable[[dict[str, Any]], bool]) -> str:
            part = [e for e in clean if sel(e)]
            return f"{sum(e['no_slower'] for e in part)}/{len(part)}"

        lines.append(f"- \"TBC/TGC no slower than gc at equal MACs\" **{_verdict([e['no_slower'] for e in clean])}**: "
                     f"{len(held)}/{len(clean)} cells (ratio <= {NOISE_TOLERANCE:.2f}); strictly faster (< 1.00) in "
                     f"{sum(e['ratio'] < 1.0 for e in clean)}/{len(clean)}"
                     + (f"; {left_out} busy cells (†) left out." if left_out else "."))
        lines.append("- By batch — " + ", ".join(f"batch {b}: {count(lambda e, b=b: e['batch'] == b)}"
                                                 for b in batches)
                     + ". By shape — " + ", ".join(f"{_shape(c, s)}: {count(lambda e, c=c: e['channels'] == c)}"
                                                   for c, s in shapes if any(e["channels"] == c for e in clean))
                     + ". By pair — " + ", ".join(f"{n}: {count(lambda e, n=n: e['pair'] == n)}"
                                                  for _, _, n, _ in pairs) + ".")
        slower = sorted((e for e in clean if not e["no_slower"]), key=lambda e: -e["ratio"])
        if slower:
            lines.append("- Slower than gc: " + "; ".join(
                f"{e['pair']} at {_shape(e['channels'], e['size'])} b{e['batch']} ({e['ratio']:.2f}x)"
                for e in slower) + ".")
        lines.append("- Geometric-mean ratio over these cells: " + ", ".join(
            f"{n} {math.exp(statistics.fmean(math.log(e['ratio']) for e in clean if e['pair'] == n)):.2f}"
            for _, _, n, _ in pairs if any(e["pair"] == n for e in clean)) + ".")
    elif data["tied_vs_gc"]:
        lines.append("- No verdict: every cell was timed while other processes were busy (†).")
    lines.append("")

    # (2) CondConv / DynConv: batched (samples as groups) vs per-sample loop
    big = max(batches)
    small = [tuple(x) for x in dict.fromkeys((r["channels"], r["size"]) for r in rows if r.get("set") == "resnet20")]
    eshapes = list(shapes) + small
    lines += [f"**(2) CondConv/DynConv batched forward vs per-sample loop at batch {big}** — speed-up = loop latency / "
              f"batched latency (target >= {TARGET_SPEEDUP:.0f}x); ResNet-50's shapes"
              + (f", then ResNet-20's (CIFAR) {', '.join(_shape(c, s) for c, s in small)}" if small else "")
              + f"; the `loop / standard` rows: the loop's latency over a plain convolution's of the same batch and shape "
              f"(about 1 = the loop already runs at plain-convolution speed, so no batching can make it several times "
              f"faster); {dagger}.", "",
              "| op | " + " | ".join(_shape(c, s) for c, s in eshapes) + f" | >= {TARGET_SPEEDUP:.0f}x |",
              "|---|" + "---:|" * len(eshapes) + "---|"]
    loop_rows = []
    for op in ("condconv", "dynconv"):
        default = {k: h.default for k, h in get_op(op).hyper.items()}
        cells, hits, eff = [], [], []
        for c, s in eshapes:
            r, n = _find(rows, op, default, c, big, s), _find(rows, f"{op}-naive-loop", default, c, big, s)
            st = _find(rows, "standard", {}, c, big, s)
            if r is None or n is None:
                cells.append("n/a")
                eff.append("n/a")
                continue
            eff.append(f"{n['latency_ms'] / st['latency_ms']:.2f}" if st else "n/a")
            e = {"op": op, "channels": c, "size": s, "batch": big, "batched_ms": r["latency_ms"],
                 "loop_ms": n["latency_ms"], "speedup": n["latency_ms"] / r["latency_ms"], "busy": _busy(r, n),
                 "set": r.get("set", "resnet50"),
                 "loop_vs_standard": n["latency_ms"] / st["latency_ms"] if st else None}
            e["meets_target"] = e["speedup"] >= TARGET_SPEEDUP
            data["expert_loop_speedup"].append(e)
            cells.append(f"{e['speedup']:.2f}x" + (" †" if e["busy"] else ""))
            if not e["busy"]:
                hits.append(e["meets_target"])
        if cells and any(cell != "n/a" for cell in cells):
            summary = f"{'yes' if hits and all(hits) else 'no'} ({sum(hits)}/{len(hits)})" if hits else "no verdict"
            lines.append(f"| {op} | " + " | ".join(cells) + f" | {summary} |")
            loop_rows.append(f"| {op} loop / standard | " + " | ".join(eff) + " | |")
    lines += loop_rows + [""]
    sp = [e for e in data["expert_loop_speedup"] if not e["busy"]]
    if sp:
        best, worst = max(sp, key=lambda e: e["speedup"]), min(sp, key=lambda e: e["speedup"])
        left_out = len(data["expert_loop_speedup"]) - len(sp)
        lines.append(f"- \"Batched CondConv/DynConv >= {TARGET_SPEEDUP:.0f}x faster than the per-sample loop at batch "
                     f"{big}\" **{_verdict([e['meets_target'] for e in sp])}**: {sum(e['meets_target'] for e in sp)}/"
                     f"{len(sp)} cells; range {worst['speedup']:.2f}x ({worst['op']} "
                     f"{_shape(worst['channels'], worst['size'])}) to {best['speedup']:.2f}x ({best['op']} "
                     f"{_shape(best['channels'], best['size'])})" + (f"; {left_out} busy cells (†) left out."
                                                                      if left_out else "."))
        for name in ("resnet50", "resnet20"):
            part = [e for e in sp if e["set"] == name]
            if part and small:
                lines.append(f"- At {name}'s shapes: {sum(e['meets_target'] for e in part)}/{len(part)} cells >= "
                             f"{TARGET_SPEEDUP:.0f}x (speed-ups {min(e['speedup'] for e in part):.2f}x to "
                             f"{max(e['speedup'] for e in part):.2f}x); the per-sample loop takes "
                             f"{min(e['loop_vs_standard'] for e in part if e['loop_vs_standard']):.2f}x to "
                             f"{max(e['loop_vs_standard'] for e in part if e['loop_vs_standard']):.2f}x a plain "
                             "convolution's time.")
        slower = [e for e in sp if e["speedup"] < 1.0]
        if slower:
            lines.append("- The batched form is SLOWER than the loop at: " + "; ".join(
                f"{e['op']} {_shape(e['channels'], e['size'])} ({e['batched_ms']:.1f} vs {e['loop_ms']:.1f} ms)"
                for e in slower) + ".")
    elif data["expert_loop_speedup"]:
        lines.append("- No verdict: every cell was timed while other processes were busy (†).")

    # context: the TBC block loop against the batched (blocks-folded-into-batch) module
    for b_ in batches:
        for c, s in shapes:
            for blocks in (2, 4, 8):
                r = _find(rows, "tbc", {"blocks": blocks}, c, b_, s)
                n = _find(rows, "tbc-naive-loop", {"blocks": blocks}, c, b_, s)
                if r and n:
                    data["tbc_loop_speedup"].append({"blocks": blocks, "channels": c, "size": s, "batch": b_,
                                                     "speedup": n["latency_ms"] / r["latency_ms"],
                                                     "busy": _busy(r, n)})
    tl = [e for e in data["tbc_loop_speedup"] if not e["busy"]]
    if tl:
        lo, hi = min(tl, key=lambda e: e["speedup"]), max(tl, key=lambda e: e["speedup"])
        lines.append(f"- For context, TBC folded into the batch vs the block loop (quiet cells): speed-up "
                     f"{lo['speedup']:.2f}x (B={lo['blocks']} {_shape(lo['channels'], lo['size'])} b{lo['batch']}) to "
                     f"{hi['speedup']:.2f}x (B={hi['blocks']} {_shape(hi['channels'], hi['size'])} b{hi['batch']}).")
    if checks:
        bad = [c for c in checks if not c["allclose"]]
        worst_diff = max(c["max_abs_diff"] for c in checks)
        lines.append(f"- Naive-loop outputs equal the batched modules' (allclose rtol={CHECK_RTOL:g}, "
                     f"atol={CHECK_ATOL:g}): {len(checks) - len(bad)}/{len(checks)} checks pass, largest |diff| "
                     f"{worst_diff:.1e}" + ("." if not bad else "; FAILED: " + ", ".join(
                         f"{c['row']} {_shape(c['channels'], c['size'])} b{c['batch']}" for c in bad) + "."))
    busy = sorted({(r["batch"], r["channels"], r["size"], r["other_cpu_cores"]) for r in rows if _busy(r)})
    if busy:
        lines.append(f"- Caution: other processes used > {OTHER_CPU_WARN} of a core (value in cores) while these "
                     "cells were timed, so their latencies are inflated and noisy — rerun on a quiet machine: "
                     + ", ".join(f"{_shape(c, s)} b{b} ({o:.2f})" for b, c, s, o in busy) + ".")
    return "\n".join(lines), data


# --- output ---------------------------------------------------------------------------------


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], text: str,
             shapes: tuple[tuple[int, int], ...], batches: tuple[int, ...]) -> str:
    out = [
        "# Operator forward latency (CPU)",
        "",
        f"Generated by `benchmarks/ops_latency.py`; do not edit by hand. Command: `{meta['command']}`",
        "",
        f"- date: {meta['date']}; run time {meta['run_time_s']:.0f} s",
        f"- torch {meta['torch']}, Python {meta['python']}, threads {meta['threads']} (torch.set_num_threads)",
        f"- CPU: {meta['cpu']} ({meta['cpu_count']} logical CPUs)",
        f"- load average (1/5/15 min) before: {meta['load_before']}, after: {meta['load_after']}; CPU used by "
        f"other processes while each shape/batch cell was timed (cores): {meta['other_cpu_per_cell']}",
        f"- nasconv revision: {meta['git']}",
        f"- timing: eval mode, torch.inference_mode, warm-up >= 2 runs and {meta['warmup_s']} s, then >= "
        f"{meta['min_repeats']} timed runs and >= {meta['min_time_s']} s per cell in {meta['rounds']} interleaved "
        f"round(s); latency = median, IQR = q3 - q1 (ms); a cell is re-timed up to {meta['retry_busy']} time(s) when "
        f"other processes used > {OTHER_CPU_WARN} of a core meanwhile (the cleanest try is kept); "
        f"memory: {meta.get('allocator', 'malloc as the platform sets it')}",
        "- params and MACs: analytic (`op_cost`), per image; the kernel is 3x3, c_in = c_out, stride 1",
        "- vs standard = latency / standard's latency at the same shape and batch; MAC efficiency = "
        "(standard latency x op MACs / standard MACs) / op latency (1.0 = as fast per MAC as a plain conv)",
        "- `*-naive-loop` rows are reference forms written in the benchmark (same weights as the module): "
        "tbc as a Python loop over the B blocks, condconv/dynconv as one F.conv2d per sample",
        "",
        "## Findings",
        "",
        text,
        "",
        "## Results",
    ]
    all_shapes = list(dict.fromkeys((r["channels"], r["size"]) for r in rows))
    for batch in batches:
        for channels, size in all_shapes:
            cell = [r for r in rows if r["channels"] == channels and r["size"] == size and r["batch"] == batch]
            if not cell:
                continue
            noisy = (f" — † timed while other processes used {cell[0]['other_cpu_cores']:.2f} cores: noisy"
                     if _busy(cell[0]) else "")
            out += ["", f"### {_shape(channels, size)}, batch {batch}{noisy}", "",
                    "| op | hyper | params | MACs (M) | latency_ms | IQR ms | runs | vs standard | MAC efficiency |",
                    "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
            for r in cell:
                hyper = Case(r["op"], r["op"], r["hyper"]).hyper_text
                rel = f"{r['vs_standard']:.2f}" if "vs_standard" in r else "n/a"
                eff = f"{r['mac_efficiency']:.2f}" if "mac_efficiency" in r else "n/a"
                out.append(f"| {r['op']} | {hyper} | {r['params']:,} | {r['macs'] / 1e6:.2f} | "
                           f"{r['latency_ms']:.3f} | {r['iqr_ms']:.3f} | {r['runs']} | {rel} | {eff} |")
    return "\n".join(out) + "\n"


def write_results(out_dir: Path, meta: dict[str, Any], rows: list[dict[str, Any]], checks: list[dict[str, Any]],
                  text: str, data: dict[str, Any], shapes: tuple[tuple[int, int], ...],
                  batches: tuple[int, ...]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ops_latency.md").write_text(markdown(meta, rows, text, shapes, batches))
    (out_dir / "ops_latency.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "checks": checks, "findings": data}, indent=1) + "\n")
    print(f"wrote {out_dir / 'ops_latency.md'} and {out_dir / 'ops_latency.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="minimum timed runs per cell (default 7; 3 with --quick)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="minimum seconds of timed runs per cell (default 0.5; 0 with --quick)")
    parser.add_argument("--retry-busy", type=int, default=None,
                        help="re-time a shape/batch cell up to N times when other processes used more than "
                        f"{OTHER_CPU_WARN} of a core meanwhile (default 1; 0 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (< 1 min): batches 1 and 4, few runs; writes files only with --out")
    parser.add_argument("--ops", default=None, help="comma-separated operators (default: all; standard is "
                        "always included as the baseline; naive rows follow tbc/condconv/dynconv)")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    parser.add_argument("--render", metavar="JSON", default=None,
                        help="time nothing: recompute the findings and Markdown from a JSON this script wrote")
    args = parser.parse_args(argv)

    if args.render:
        saved = json.loads(Path(args.render).read_text())
        shapes = tuple((c, s) for c, s in saved["meta"]["shapes"])
        batches = tuple(saved["meta"]["batches"])
        text, data = findings(saved["rows"], saved["checks"], shapes, batches)
        print(text)
        write_results(Path(args.out) if args.out else Path(__file__).resolve().parent / "results",
                      saved["meta"], saved["rows"], saved["checks"], text, data, shapes, batches)
        return 1 if any(not c["allclose"] for c in saved["checks"]) else 0

    known = list_ops()
    if args.ops:
        wanted = [o.strip() for o in args.ops.split(",") if o.strip()]
        unknown = [o for o in wanted if o not in known]
        if unknown:
            parser.error(f"unknown operator {unknown[0]!r}; known: {', '.join(known)}")
        ops = ["standard"] + [o for o in known if o in wanted and o != "standard"]
    else:
        ops = known
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    min_repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    if min_repeats < 1:
        parser.error(f"--repeats must be >= 1, got {min_repeats}")
    min_time_s = args.min_time if args.min_time is not None else (0.0 if args.quick else 0.5)
    batches = (1, 4) if args.quick else BATCHES
    rounds = 1 if args.quick else 2
    retry_busy = args.retry_busy if args.retry_busy is not None else (0 if args.quick else 1)
    if retry_busy < 0:
        parser.error(f"--retry-busy must be >= 0, got {retry_busy}")
    warmup_s = 0.0 if args.quick else 0.1
    out_dir = Path(args.out) if args.out else (None if args.quick else Path(__file__).resolve().parent / "results")

    torch.set_num_threads(args.threads)
    allocator = keep_freed_memory()
    cases = build_cases(ops)
    load_before = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{len(cases)} rows x {len(SHAPES)} shapes x {len(batches)} batches on {torch.get_num_threads()} "
          f"threads; load average {load_before}", flush=True)
    t0 = time.perf_counter()
    rows, checks = run(cases, shapes=SHAPES, batches=batches, rounds=rounds, min_repeats=min_repeats,
                       min_time_s=min_time_s, max_repeats=2000, warmup_s=warmup_s,
                       retry_busy=retry_busy,
                       log=lambda s: print(s, flush=True))
    for r in rows:
        r["set"] = "resnet50"
    expert_ops = [o for o in ("condconv", "dynconv") if o in ops]
    if expert_ops:
        # where a per-sample convolution is too small to keep the cores busy: ResNet-20's shapes
        small_cases = [c for c in cases if c.op in ("standard", *expert_ops) and c.hyper == {
            k: h.default for k, h in get_op(c.op).hyper.items()}]
        print(f"{len(small_cases)} rows x {len(SMALL_SHAPES)} ResNet-20 shapes at batch {max(batches)}", flush=True)
        rows2, checks2 = run(small_cases, shapes=SMALL_SHAPES, batches=(max(batches),), rounds=rounds,
                             min_repeats=min_repeats, min_time_s=min_time_s, max_repeats=2000, warmup_s=warmup_s,
                             retry_busy=retry_busy, log=lambda s: print(s, flush=True))
        for r in rows2:
            r["set"] = "resnet20"
        rows, checks = rows + rows2, checks + checks2
    run_time = time.perf_counter() - t0
    text, data = findings(rows, checks, SHAPES, batches)
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/ops_latency.py" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:])),
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "allocator": allocator, "cpu": cpu_model(), "cpu_count": os.cpu_count(), "git": git_revision(),
        "load_before": load_before, "load_after": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        "other_cpu_per_cell": ", ".join(f"{_shape(c, s)} b{b} {r['other_cpu_cores']:.2f}" for c, s, b, r in (
            (c, s, b, next(r for r in rows if r["channels"] == c and r["size"] == s and r["batch"] == b))
            for b in batches for c, s in SHAPES + SMALL_SHAPES
            if any(r["channels"] == c and r["size"] == s and r["batch"] == b for r in rows))),
        "run_time_s": run_time, "min_repeats": min_repeats, "min_time_s": min_time_s, "rounds": rounds,
        "retry_busy": retry_busy,
        "warmup_s": warmup_s, "batches": list(batches), "shapes": [list(s) for s in SHAPES],
        "noise_tolerance": NOISE_TOLERANCE, "target_speedup": TARGET_SPEEDUP,
    }
    print("\n" + text)
    print(f"\nrun time {run_time:.0f} s")
    if out_dir is not None:
        write_results(out_dir, meta, rows, checks, text, data, SHAPES, batches)
    return 1 if any(not c["allclose"] for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
