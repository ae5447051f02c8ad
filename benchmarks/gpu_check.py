"""One prepared check of nasconv on a CUDA GPU (issue #20): correctness of every operator there,
the baseline's evaluation, an inline search, and the operators' GPU timings.

    python benchmarks/gpu_check.py --data-dir DIR [--out DIR] [--time-limit 420] [--note TEXT]
    python benchmarks/gpu_check.py --dry-run --out /tmp/x   # tiny sizes, CPU, synthetic data

Four parts, run in order (part 4, which captures CUDA graphs, last); the results files are
rewritten after each part, so a run stopped at its time limit keeps what it finished, and a part
that raises is recorded (traceback in the JSON) without stopping the others:

1. **Operators on the device.** Every operator choice of the ``resnet50-all`` space (each
   hyperparameter setting of its grid) at two of ResNet-50's 3x3 shapes (64 ch on 56x56,
   stride 1; 256 ch on 28x28, stride 2): a training step (forward, loss = mean of the output
   times a fixed random tensor, backward, SGD step) in fp32
   and under ``torch.autocast(dtype=torch.bfloat16)``: finite loss, every parameter's gradient
   present and finite; an inference pass (eval, ``torch.inference_mode``, batch 1 and 4). In
   fp32 the device's outputs (eval, batch 1 and 4; training mode) and gradients are compared with
   the CPU's for the same weights (a deep copy of the module), with TF32 off
   (``torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False``) during
   the comparison. Analytic params and MACs (``op_cost``) are compared with
   ``FlopCounterMode`` FLOPs / 2 measured on the device (batch 1 and 2).
2. **Baseline evaluation.** ``nasconv.evaluate`` of ``resnet50``'s baseline on the device with
   the GPU default proxy (the space's ``proxy_gpu``: the whole network, 3x3/2 stem at 32 px,
   40,000 training images for 8 epochs at batch 256, 10,000 validation images for accuracy,
   Wilson 95% interval): the time of one candidate's evaluation under the GPU defaults; training time and per-step wall time; latency of the full
   network at 224 px with CUDA events (``nasconv.profile.measure_latency``) at batch 1 and 32.
3. **Inline search.** ``nasconv.run_search`` of 20 candidates on ``resnet50`` within
   ``4gflops`` (the CPU's brief-training proxy, a reduced copy, pinned; SQLite in a temporary
   folder; ``runner='inline'``): candidates per minute and, per training step, the share of the
   step's wall time during which the GPU runs nothing (host-bound). Method: the search's own
   training steps are timed on the host (``evaluate``'s progress callback, no profiler); two of
   its candidates are then trained again under ``torch.profiler`` (steps 11-50), whose trace gives
   the GPU's busy time (union of kernel, memcpy and memset intervals) per step. Idle share =
   1 - busy time per step / unprofiled wall time per step; the profiled run's own figure
   (busy / profiled wall, inflated by the profiler's host overhead) is shown beside it.
4. **Operator timings on the device.** ``gc`` (G), ``tbc`` (B) and ``tgc`` (B, G=2) for B, G in
   {1, 2, 4, 8, 16, 32} at ResNet-50's four 3x3 shapes, batch 1 and 32, both of TBC/TGC's exact
   forms (the batch fold, the paper's; the tiled B*G-group conv; and which one the module picks in
   inference); ``condconv``/``dynconv``'s batched forward against a per-sample loop
   (``ExpertLoop`` of ``benchmarks/ops_latency.py``) at batch 32, outputs checked equal. Each
   timing: CUDA events around ``inner`` back-to-back calls (at least ~1 ms of work), 21 samples
   ("eager": what a program sees, bound by the host's launch rate at small sizes), and the same
   calls captured in a CUDA graph, each replay timed with CUDA events ("graph": the GPU's own
   time); median per call, IQR and the distribution-free 95% interval of the median
   (``nasconv.stats.median_interval``). TF32 as PyTorch's defaults leave it for parts 2-4.

Writes ``gpu_check.md`` and ``gpu_check.json`` to ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as _dt
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _make_nasconv_importable() -> None:
    """Run from a source tree without installation (the GPU machine): the repo on sys.path, and
    the space files' package ``nasconv.search_spaces``, which setuptools maps to ``search_spaces/``."""
    if importlib.util.find_spec("nasconv") is None:
        sys.path.insert(0, str(REPO))
    try:
        importlib.import_module("nasconv.search_spaces")
    except ModuleNotFoundError:
        import nasconv

        folder = Path(nasconv.__file__).resolve().parent.parent / "search_spaces"
        spec = importlib.util.spec_from_file_location("nasconv.search_spaces", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["nasconv.search_spaces"] = module
        spec.loader.exec_module(module)
        nasconv.search_spaces = module


_make_nasconv_importable()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from nasconv.build import build_model  # noqa: E402
from nasconv.evaluate import EvalConfig, eval_config_for, evaluate, with_train_overrides  # noqa: E402
from nasconv.flops import measure_cost  # noqa: E402
from nasconv.ops import create_op, list_ops, op_cost, validate_op  # noqa: E402
from nasconv.ops.dynamic import CondConv2d, DynamicConv2d  # noqa: E402
from nasconv.profile import measure_latency, resolve_device  # noqa: E402
from nasconv.spaces import load_space  # noqa: E402
from nasconv.stats import median_interval  # noqa: E402
from nasconv.train import TrainConfig  # noqa: E402

# --- settings -------------------------------------------------------------------------------

#: part 1: (channels, input size, stride) of ResNet-50 3x3 convs: stage 1's, stage 3's first (strided)
CHECK_SHAPES = ((64, 56, 1), (256, 28, 2))
DRY_CHECK_SHAPES = ((16, 8, 1), (32, 8, 2))
CHECK_BATCH = 4
#: operators of the dry run's part 1 (first grid setting of each)
DRY_OPS = ("standard", "tbc", "condconv", "dynconv")
#: fp32 device-vs-CPU tolerance, relative to the largest |value| (outputs: at least 1; gradients)
#: TF32 would show as ~1e-3; fp32 algorithms differ by ~1e-6
OUT_TOL = 1e-4
GRAD_TOL = 1e-3
#: bf16 autocast output vs fp32, relative to the largest |output|: reported; "close" below this
BF16_TOL = 5e-2

#: part 4
SHAPES = ((64, 56), (128, 28), (256, 14), (512, 7))
BATCHES = (1, 32)
FACTORS = (1, 2, 4, 8, 16, 32)
TGC_GROUPS = 2
EXPERT_OPS = (("condconv", {"experts": 4}), ("condconv", {"experts": 8}), ("dynconv", {"experts": 4}))
EXPERT_BATCH = 32
TARGET_SPEEDUP = 5.0
NOISE = 1.05

SEARCH_TRIALS = 20
PROFILE_SKIP, PROFILE_ACTIVE, PROFILE_CANDIDATES = 10, 40, 3


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What a full run and a dry run differ in."""

    check_shapes: tuple
    check_batch: int
    ops: tuple[str, ...] | None  # None: all of the space's
    data: str
    baseline_train: TrainConfig
    latency_resolution: int | None
    latency_batches: tuple[int, ...]
    latency_max_time_s: float
    search_trials: int
    search_train: dict[str, Any]
    search_latency_resolution: int | None
    search_latency_max_time_s: float
    shapes: tuple
    batches: tuple[int, ...]
    factors: tuple[int, ...]
    expert_batch: int
    samples: int
    min_sample_ms: float
    profile_skip: int
    profile_active: int


#: the CPU's brief-training proxy of resnet50 (a reduced copy on 8,000 images), pinned for part 3
CPU_PROXY = {k: getattr(TrainConfig(), k) for k in ("train_images", "val_images", "epochs", "batch_size", "resolution")}
CPU_PROXY.update(load_space("resnet50").proxy_settings_for("cpu"))

FULL = Sizes(
    check_shapes=CHECK_SHAPES, check_batch=CHECK_BATCH, ops=None, data="fashion-mnist",
    # the GPU default proxy (the space's proxy_gpu section: what `nasconv search` trains on a GPU)
    baseline_train=TrainConfig(**load_space("resnet50").proxy_settings_for("cuda"), seed=0),
    latency_resolution=None, latency_batches=(1, 32), latency_max_time_s=5.0,
    # screening speed with the CPU's reduced-copy proxy (20 candidates at the GPU default would take ~20 min)
    search_trials=SEARCH_TRIALS, search_train=CPU_PROXY, search_latency_resolution=None, search_latency_max_time_s=3.0,
    shapes=SHAPES, batches=BATCHES, factors=FACTORS, expert_batch=EXPERT_BATCH, samples=21, min_sample_ms=1.0,
    profile_skip=PROFILE_SKIP, profile_active=PROFILE_ACTIVE,
)
DRY = Sizes(
    check_shapes=DRY_CHECK_SHAPES, check_batch=2, ops=DRY_OPS, data="synthetic:200",
    baseline_train=TrainConfig(train_images=64, val_images=40, epochs=1, batch_size=16, resolution=16,
                               max_depth=1, width_factor=0.25, small_stem=True, seed=0),
    latency_resolution=32, latency_batches=(1, 2), latency_max_time_s=0.3,
    search_trials=2, search_train={"train_images": 64, "val_images": 40, "batch_size": 16, "resolution": 16},
    search_latency_resolution=32, search_latency_max_time_s=0.2,
    shapes=((16, 8),), batches=(1, 2), factors=(1, 2, 4), expert_batch=4, samples=5, min_sample_ms=0.0,
    profile_skip=1, profile_active=2,
)


# --- small helpers --------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def spread(samples: list[float]) -> dict[str, Any]:
    """Median, quartiles, IQR and the 95% interval of the median (distribution-free)."""
    xs = [float(v) for v in samples]
    if not xs:
        return {"median": None, "q1": None, "q3": None, "iqr": None, "ci95": None, "n": 0}
    if len(xs) == 1:
        q1 = med = q3 = xs[0]
    else:
        q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    lo, hi = median_interval(xs)
    return {"median": med, "q1": q1, "q3": q3, "iqr": q3 - q1, "ci95": [lo, hi], "n": len(xs)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def exact_fp32():
    """TF32 off for matmuls and cuDNN convolutions (PyTorch leaves it on for cuDNN by default)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _max_abs(t: torch.Tensor) -> float:
    return float(t.detach().float().abs().max()) if t.numel() else 0.0


def _diff(got: torch.Tensor, ref: torch.Tensor) -> float:
    if got.shape != ref.shape:
        return math.inf
    return float((got.detach().float().cpu() - ref.detach().float().cpu()).abs().max()) if ref.numel() else 0.0


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t.detach()).all())


# --- part 1: every operator on the device ---------------------------------------------------


def _train_step(layer: nn.Module, x: torch.Tensor, proj: torch.Tensor,
                autocast_dtype: torch.dtype | None) -> dict[str, Any]:
    """Forward, loss, backward, one SGD step; what came out of it.

    The loss is the output's mean product with a fixed random tensor ``proj``: with mean(y^2) an
    operator that ends in a training-mode BatchNorm has a loss that does not depend on anything
    before the norm (its output is normalised), so those gradients are rounding noise that no
    two devices share."""
    layer.train()
    x = x.clone().requires_grad_(True)
    ctx = torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with ctx:
        y = layer(x)
    loss = (y.float() * proj.to(y.device)).mean()
    loss.backward()
    params = dict(layer.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and p.grad is None]
    grads_finite = all(_finite(p.grad) for p in params.values() if p.grad is not None)
    grads = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}
    torch.optim.SGD(layer.parameters(), lr=0.01).step()
    return {"y": y.detach(), "loss": float(loss.detach()), "x_grad": x.grad, "grads": grads, "missing": missing,
            "grads_finite": grads_finite and x.grad is not None and _finite(x.grad),
            "params_finite": all(_finite(p) for p in layer.parameters())}


def check_op(name: str, hyper: dict[str, Any], c: int, size: int, stride: int, batch: int,
             device: torch.device) -> dict[str, Any]:
    row: dict[str, Any] = {"op": name, "hyper": hyper, "channels": c, "size": size, "stride": stride,
                           "batch": batch}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    cpu = create_op(name, c, c, 3, stride, **hyper)
    dev = copy.deepcopy(cpu).to(device)
    bf = copy.deepcopy(cpu).to(device)
    x = torch.randn(batch, c, size, size)
    xd = x.to(device)
    notes: list[str] = []
    with exact_fp32():
        # inference: eval, inference mode, batch 1 (TBC/TGC's tiled form on large maps) and `batch`
        cpu.eval()
        dev.eval()
        out_diffs, out_scale, infer_finite = [], 0.0, True
        with torch.inference_mode():
            for xb, xdb in ((x[:1], xd[:1]), (x, xd)):
                ref, got = cpu(xb), dev(xdb)
                infer_finite &= _finite(got)
                out_diffs.append(_diff(got, ref))
                out_scale = max(out_scale, _max_abs(ref))
            fp32_eval = dev(xd)
        # training step in fp32 on both
        proj = torch.randn(fp32_eval.shape, generator=torch.Generator().manual_seed(1))
        ref_t, got_t = _train_step(cpu, x, proj, None), _train_step(dev, xd, proj, None)
    train_out_diff = _diff(got_t["y"], ref_t["y"])
    out_scale = max(out_scale, _max_abs(ref_t["y"]))
    # each gradient relative to its own largest value, floored at 1% of the largest of all (a
    # gradient that is legitimately tiny next to the others is not held to its own scale)
    pairs = [(n, got_t["grads"].get(n), g) for n, g in ref_t["grads"].items()]
    if ref_t["x_grad"] is not None:
        pairs.append(("input", got_t["x_grad"], ref_t["x_grad"]))
    floor = 0.01 * max((_max_abs(g) for _, _, g in pairs), default=0.0)
    grad_rel, grad_worst = 0.0, None
    for pname, gd, g in pairs:
        rel = math.inf if gd is None else _diff(gd, g) / max(_max_abs(g), floor, 1e-30)
        if rel > grad_rel or grad_worst is None:
            grad_rel, grad_worst = max(grad_rel, rel), pname
    max_abs_diff = max(out_diffs + [train_out_diff])
    rel_diff = max_abs_diff / max(1.0, out_scale)
    fp32_ok = (infer_finite and math.isfinite(got_t["loss"]) and not got_t["missing"] and got_t["grads_finite"]
               and got_t["params_finite"] and rel_diff <= OUT_TOL and grad_rel <= GRAD_TOL)
    if got_t["missing"]:
        notes.append("fp32: no gradient for " + ", ".join(got_t["missing"]))
    # bf16 autocast: an inference pass (same weights as fp32_eval), then a training step
    bf.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        bf_eval = bf(xd)
    bf_t = _train_step(bf, xd, proj, torch.bfloat16)
    bf16_rel = _diff(bf_eval, fp32_eval) / max(1.0, _max_abs(fp32_eval))
    bf16_ok = (math.isfinite(bf_t["loss"]) and not bf_t["missing"] and bf_t["grads_finite"]
               and bf_t["params_finite"] and _finite(bf_eval))
    if bf_t["missing"]:
        notes.append("bf16: no gradient for " + ", ".join(bf_t["missing"]))
    # analytic cost against FlopCounterMode on the device
    analytic = op_cost(name, c, c, 3, size, size, stride, **hyper)
    measured = [measure_cost(dev, (c, size, size), batch=b) for b in (1, 2)]
    macs_ok = all(m.macs == analytic.macs for m in measured)
    params_ok = all(m.params == analytic.params for m in measured)
    row.update(fp32_ok=bool(fp32_ok), bf16_ok=bool(bf16_ok), inference_finite=bool(infer_finite),
               max_abs_diff=max_abs_diff, rel_diff=rel_diff, output_scale=out_scale, grad_rel_diff=grad_rel, grad_worst=grad_worst,
               loss_fp32=got_t["loss"], loss_cpu=ref_t["loss"], loss_bf16=bf_t["loss"], bf16_rel_diff=bf16_rel,
               bf16_close=bool(bf16_rel <= BF16_TOL), macs=analytic.macs, params=analytic.params,
               measured_macs=[m.macs for m in measured], macs_ok=bool(macs_ok), params_ok=bool(params_ok),
               notes=notes, time_s=time.perf_counter() - t0)
    return row


def op_choices(sizes: Sizes) -> list[tuple[str, dict[str, Any]]]:
    space = load_space("resnet50-all")
    seen = list(dict.fromkeys(op for st in space.stages for op in st.ops))
    out = [(op.name, op.kwargs) for op in seen]
    if sizes.ops is not None:
        firsts: dict[str, dict[str, Any]] = {}
        for name, hyper in out:
            firsts.setdefault(name, hyper)
        out = [(n, firsts[n]) for n in sizes.ops if n in firsts]
    return out


def part_ops(sizes: Sizes, device: torch.device, deadline: float) -> dict[str, Any]:
    choices = op_choices(sizes)
    rows, skipped = [], []
    for name, hyper in choices:
        for c, size, stride in sizes.check_shapes:
            if time.perf_counter() > deadline:
                skipped.append({"op": name, "hyper": hyper, "channels": c, "why": "time limit"})
                continue
            try:
                validate_op(name, c, c, 3, stride, **hyper)
            except Exception as exc:  # not valid at this shape: the space says where it is
                skipped.append({"op": name, "hyper": hyper, "channels": c, "why": str(exc)})
                continue
            try:
                row = check_op(name, hyper, c, size, stride, sizes.check_batch, device)
            except Exception as exc:
                row = {"op": name, "hyper": hyper, "channels": c, "size": size, "stride": stride,
                       "batch": sizes.check_batch, "fp32_ok": False, "bf16_ok": False, "macs_ok": False,
                       "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            rows.append(row)
            flag = "ok" if row.get("fp32_ok") and row.get("bf16_ok") and row.get("macs_ok") else "FAIL"
            log(f"  op {name}{hyper} {c}x{size} s{stride}: {flag} "
                f"(diff {row.get('max_abs_diff', float('nan')):.2e}, rel {row.get('rel_diff', float('nan')):.1e}, "
                f"grad rel {row.get('grad_rel_diff', float('nan')):.1e}, bf16 rel {row.get('bf16_rel_diff', float('nan')):.1e})"
                + (f" {row['error']}" if "error" in row else ""))
    covered = sorted({r["op"] for r in rows})
    summary = {
        "cases": len(rows), "choices": len(choices), "ops_covered": covered,
        "ops_not_covered": [o for o in list_ops() if o not in covered],
        "fp32_ok": sum(bool(r.get("fp32_ok")) for r in rows), "bf16_ok": sum(bool(r.get("bf16_ok")) for r in rows),
        "macs_ok": sum(bool(r.get("macs_ok")) for r in rows), "params_ok": sum(bool(r.get("params_ok")) for r in rows),
        "bf16_close": sum(bool(r.get("bf16_close")) for r in rows),
        "errors": sum("error" in r for r in rows),
        "max_rel_diff": max((r["rel_diff"] for r in rows if "rel_diff" in r), default=None),
        "max_grad_rel_diff": max((r["grad_rel_diff"] for r in rows if "grad_rel_diff" in r), default=None),
    }
    return {"rows": rows, "skipped": skipped, "summary": summary,
            "settings": {"shapes": [list(s) for s in sizes.check_shapes], "batch": sizes.check_batch,
                         "out_tol": OUT_TOL, "grad_tol": GRAD_TOL, "bf16_tol": BF16_TOL}}


# --- part 2: the baseline's evaluation ------------------------------------------------------


def _step_times(stamps: list[float], skip: int) -> list[float]:
    """Per-step wall times (ms) from the progress callback's time stamps (the first ``skip`` left out)."""
    diffs = [(b - a) * 1e3 for a, b in zip(stamps, stamps[1:])]
    return diffs[skip:] if len(diffs) > skip + 2 else diffs


def part_baseline(sizes: Sizes, device: torch.device, data_dir: str | None) -> dict[str, Any]:
    arch = load_space("resnet50").baseline()
    cfg = EvalConfig(data=sizes.data, data_dir=data_dir, device=str(device), train=sizes.baseline_train,
                     latency_batch=sizes.latency_batches[0], latency_resolution=sizes.latency_resolution,
                     latency_max_time_s=sizes.latency_max_time_s)
    stamps: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    m = evaluate(arch, cfg, progress=lambda step, total, loss: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    steps = _step_times(stamps, 5)
    out: dict[str, Any] = {
        "arch": "resnet50 baseline (all standard)", "train_config": sizes.baseline_train.to_dict(),
        "data": sizes.data, "accuracy": m["accuracy"], "accuracy_ci": m.get("accuracy_ci"),
        "accuracy_se": m.get("accuracy_se"), "val_images": m.get("val_images"), "diverged": m["diverged"],
        "val_loss": m.get("val_loss"), "train_time_s": m["train_time_s"], "steps": m["steps"],
        "step_ms": spread(steps), "images_per_s": (sizes.baseline_train.batch_size * 1e3 / statistics.median(steps))
        if steps else None, "proxy_params": m.get("proxy_params"), "proxy_macs": m.get("proxy_macs"),
        "params": m["params"], "macs": m["macs"], "eval_wall_s": wall, "latency": {},
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    res = m.get("latency_resolution")
    out["latency"][str(sizes.latency_batches[0])] = {
        "median_ms": m["latency_ms"], "iqr_ms": m["latency_iqr_ms"], "ci95_ms": m["latency_ci_ms"],
        "rel_iqr": m["latency_rel_iqr"], "repeats": m["latency_repeats"], "capped": m["latency_capped"],
        "resolution": res, "source": "evaluate()"}
    for b in sizes.latency_batches[1:]:
        torch.manual_seed(0)
        lat = measure_latency(build_model(arch), in_channels=arch.in_channels, resolution=res, batch_size=b,
                              device=device, max_time_s=sizes.latency_max_time_s)
        out["latency"][str(b)] = {"median_ms": lat.median_ms, "iqr_ms": lat.iqr_ms,
                                  "ci95_ms": [lat.ci_low_ms, lat.ci_high_ms], "rel_iqr": lat.rel_iqr,
                                  "repeats": lat.repeats, "capped": lat.capped, "resolution": lat.resolution,
                                  "source": "measure_latency()", "images_per_s": b * 1e3 / lat.median_ms}
    return out


# --- part 3: an inline search, and how much of a training step the GPU idles ---------------


def busy_union(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Total length of the union of ``intervals`` clipped to [lo, hi]."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, cur_a, cur_b = 0.0, None, None
    for a, b in clipped:
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


#: Chrome-trace categories of GPU activity (not "gpu_user_annotation": a record_function range
#: drawn on the GPU's timeline spans idle gaps too)
DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


def _trace_intervals(prof: Any) -> tuple[list[tuple[float, float]], list[tuple[float, float]], str]:
    """(GPU activity intervals, host ProfilerStep intervals) in us, from the profiler's Chrome trace
    (its categories tell kernels from the GPU-side copies of annotations, which the event list
    mixes in with the device's events)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    steps, device_iv = [], []
    for ev in events:
        if ev.get("ph") != "X" or "dur" not in ev:
            continue
        span = (float(ev["ts"]), float(ev["ts"]) + float(ev["dur"]))
        if str(ev.get("name", "")).startswith("ProfilerStep") and ev.get("cat") == "user_annotation":
            steps.append(span)
        elif ev.get("cat") in DEVICE_CATEGORIES:
            device_iv.append(span)
    return device_iv, sorted(steps), "chrome trace"


def profile_training(arch: Any, cfg: EvalConfig, device: torch.device, skip: int, active: int) -> dict[str, Any]:
    """Train ``arch`` as the search did, under torch.profiler for steps skip+1 .. skip+active."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    total = max(1, cfg.train.train_images // cfg.train.batch_size) * cfg.train.epochs
    active = max(1, min(active, total - skip - 1))
    with profile(activities=activities, schedule=schedule(wait=max(0, skip - 1), warmup=1, active=active,
                                                          repeat=1)) as prof:
        evaluate(arch, dataclasses.replace(cfg, latency=False), progress=lambda *a: prof.step())
    device_iv, steps, source = _trace_intervals(prof)
    found = len(steps)
    steps = steps[-active:]  # the active cycle's (the schedule records one)
    if not steps:
        return {"error": "no ProfilerStep ranges in the trace"}
    per_step_busy = [busy_union(device_iv, a, b) / 1e3 for a, b in steps]
    per_step_wall = [(b - a) / 1e3 for a, b in steps]
    lo, hi = steps[0][0], steps[-1][1]
    busy = busy_union(device_iv, lo, hi) / 1e3
    return {"steps_profiled": len(steps), "step_ranges_found": found, "first_step": skip + 1, "source": source,
            "device_events": len(device_iv), "busy_ms_per_step": busy / len(steps),
            "profiled_wall_ms_per_step": (hi - lo) / 1e3 / len(steps),
            "busy_ms": spread(per_step_busy), "profiled_wall_ms": spread(per_step_wall),
            "profiled_idle_share": 1 - busy / ((hi - lo) / 1e3) if hi > lo and device.type == "cuda" else None}


def part_search(sizes: Sizes, device: torch.device, data_dir: str | None, deadline: float) -> dict[str, Any]:
    import optuna

    from nasconv.arch import ArchSpec
    from nasconv.search import SearchConfig, run_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("resnet50")
    ecfg = eval_config_for(space, data=sizes.data, data_dir=data_dir, device=str(device))
    ecfg = with_train_overrides(ecfg, **sizes.search_train)
    ecfg = dataclasses.replace(ecfg, latency_resolution=sizes.search_latency_resolution,
                               latency_max_time_s=sizes.search_latency_max_time_s)
    records: list[dict[str, Any]] = []

    def evaluator(arch: ArchSpec, cfg: EvalConfig) -> dict[str, Any]:
        stamps: list[float] = []
        t0 = time.perf_counter()
        m = evaluate(arch, cfg, progress=lambda step, total, loss: stamps.append(time.perf_counter()))
        wall = time.perf_counter() - t0
        records.append({"arch_hash": arch.arch_hash, "arch": arch.to_dict(),
                        "ops": [st.op.label() for st in arch.stages], "eval_wall_s": wall,
                        "train_time_s": m["train_time_s"], "steps": m["steps"], "accuracy": m["accuracy"],
                        "latency_ms": m.get("latency_ms"), "macs": m["macs"], "stamps": stamps})
        log(f"  candidate {len(records)}: {', '.join(records[-1]['ops'])}: acc {m['accuracy']:.3f}, "
            f"latency {m.get('latency_ms') or float('nan'):.2f} ms, eval {wall:.1f} s")
        return m

    tmp = tempfile.mkdtemp(prefix="gpu_check_search_")
    base = SearchConfig(space="resnet50", budget="4gflops", trials=1, seed=0, storage=f"sqlite:///{tmp}/search.db",
                        eval=ecfg, runner="inline", evaluate_baseline=False, progress=False)
    reserve_s = 40.0  # the profiled re-runs and writing the results
    chunks, result, t_search = [], None, 0.0
    target = 0
    while target < sizes.search_trials:
        done = target
        if records:
            per = t_search / max(1, len(records))
            fits = int((deadline - time.perf_counter() - reserve_s) / (1.5 * per))
            target = min(sizes.search_trials, done + max(0, fits))
        else:
            target = min(sizes.search_trials, 5 if sizes.search_trials > 5 else sizes.search_trials)
        if target <= done:
            log(f"  search stops at {done} candidates: time limit")
            break
        t0 = time.perf_counter()
        result = run_search(dataclasses.replace(base, trials=target), evaluator=evaluator)
        dt = time.perf_counter() - t0
        t_search += dt
        chunks.append({"trials_target": target, "wall_s": dt})
    evaluated = len(records)
    eval_walls = [r["eval_wall_s"] for r in records]
    step_ms = [t for r in records for t in _step_times(r["stamps"], sizes.profile_skip)]
    out: dict[str, Any] = {
        "space": "resnet50", "budget": "4gflops", "sampler": "tpe (default)", "runner": "inline",
        "eval_config": ecfg.to_dict(), "evaluated": evaluated, "search_wall_s": t_search, "chunks": chunks,
        "candidates_per_min": evaluated * 60.0 / t_search if t_search > 0 else None,
        "eval_wall_s": spread(eval_walls), "train_time_s": spread([r["train_time_s"] for r in records]),
        "overhead_s_per_candidate": (t_search - sum(eval_walls)) / evaluated if evaluated else None,
        "step_ms_unprofiled": spread(step_ms),
        "candidates": [{k: v for k, v in r.items() if k not in ("stamps", "arch")} for r in records],
    }
    if result is not None:
        out.update(failed=result.failed, rejected=result.rejected, cached=result.cached,
                   front_size=len(result.front), hypervolume=result.hypervolume)
    # how much of a training step the GPU idles: profile a few of the search's own candidates
    prof_rows = []
    for r in records[:PROFILE_CANDIDATES]:
        if time.perf_counter() > deadline - 10:
            break
        try:
            p = profile_training(ArchSpec.from_dict(r["arch"]), ecfg, device, sizes.profile_skip,
                                 sizes.profile_active)
        except Exception as exc:
            p = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        p["ops"] = r["ops"]
        if "busy_ms_per_step" in p:
            first = p["first_step"]
            # stamps[i] ends training step i+1, so the diff at index t-2 is training step t
            walls = _step_times(r["stamps"], 0)[first - 2:first - 2 + p["steps_profiled"]]
            p["unprofiled_wall_ms"] = spread(walls)
            if walls and device.type == "cuda":
                mean_wall = sum(walls) / len(walls)
                p["unprofiled_wall_ms_per_step"] = mean_wall
                p["idle_share"] = max(0.0, 1 - p["busy_ms_per_step"] / mean_wall)
            else:
                p["idle_share"] = None
        prof_rows.append(p)
        log(f"  profiled {', '.join(r['ops'])}: busy {p.get('busy_ms_per_step', float('nan')):.2f} ms/step, "
            f"idle share {p.get('idle_share')}")
    out["profiled"] = prof_rows
    shares = [p["idle_share"] for p in prof_rows if p.get("idle_share") is not None]
    out["idle_share"] = sum(shares) / len(shares) if shares else None
    return out


# --- part 4: operator timings on the device -------------------------------------------------


def time_calls(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, device: torch.device, *, samples: int,
               min_sample_ms: float) -> dict[str, Any]:
    """Per-call time (ms): ``inner`` back-to-back calls between two CUDA events (the host clock on a
    CPU), ``samples`` times, after a warm-up; inner is set so that a sample takes >= min_sample_ms."""
    cuda = device.type == "cuda"

    def sample(inner: int) -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn(x)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / inner
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(x)
        return (time.perf_counter() - t0) * 1e3 / inner

    with torch.inference_mode():
        for _ in range(3):
            fn(x)
        _sync(device)
        one = min(sample(1) for _ in range(3))
        inner = max(1, min(200, math.ceil(min_sample_ms / max(one, 1e-3))))
        times = [sample(inner) for _ in range(samples)]
    s = spread(times)
    s["inner"] = inner
    if cuda:
        try:
            s["graph"] = time_graph(fn, x, samples=samples, inner=min(inner, 50))
        except Exception as exc:  # a form that cannot be captured: the eager figure stands alone
            s["graph"] = {"error": f"{type(exc).__name__}: {exc}"}
    return s


def time_graph(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, *, samples: int, inner: int) -> dict[str, Any]:
    """Per-call GPU time (ms) without the host: ``inner`` calls captured in one CUDA graph, each
    replay timed with CUDA events, ``samples`` times. What the GPU itself spends on the call,
    where back-to-back eager calls can be bound by the host's launch rate."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode():
        with torch.cuda.stream(stream):  # warm up on a side stream, as capture wants
            for _ in range(3):
                fn(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(inner):
                fn(x)
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(samples):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    del graph
    out = spread(times)
    out["inner"] = inner
    return out


def _tiled_fn(layer: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch.nn.functional as F

    def run(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, layer._tiled_weight(), None, layer.stride, layer.kernel_size // 2, 1,
                        layer.blocks * layer.groups)
    return run


def _fold_fn(layer: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch.nn.functional as F

    def run(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        y = F.conv2d(x.reshape(n * layer.blocks, layer.in_channels // layer.blocks, h, w), layer.weight, None,
                     layer.stride, layer.kernel_size // 2, 1, layer.groups)
        return y.reshape(n, layer.out_channels, y.shape[-2], y.shape[-1])
    return run


def part_op_bench(sizes: Sizes, device: torch.device, deadline: float) -> dict[str, Any]:
    from ops_latency import ExpertLoop  # the per-sample reference form (benchmarks/ops_latency.py)

    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    kw = {"samples": sizes.samples, "min_sample_ms": sizes.min_sample_ms}
    for c, s in sizes.shapes:
        for b in sizes.batches:
            if time.perf_counter() > deadline:
                log("  op timings stop: time limit")
                break
            torch.manual_seed(0)
            x = torch.randn(b, c, s, s, device=device)
            for f in sizes.factors:
                if c % f:
                    continue
                base = {"channels": c, "size": s, "batch": b}
                gc = create_op("gc", c, c, 3, 1, groups=f).to(device).eval()
                rows.append({**base, "op": "gc", "B": 1, "G": f, "form": "module",
                             "macs": op_cost("gc", c, c, 3, s, s, 1, groups=f).macs,
                             **time_calls(gc, x, device, **kw)})
                for op, hyper, bb, gg in (("tbc", {"blocks": f}, f, 1), ("tgc", {"blocks": f, "groups": TGC_GROUPS},
                                                                        f, TGC_GROUPS)):
                    if c % (bb * gg) or (op == "tgc" and bb * gg > max(sizes.factors)):
                        continue
                    layer = create_op(op, c, c, 3, 1, **hyper).to(device).eval()
                    with torch.inference_mode():
                        picks = "tiled" if layer._runs_tiled(b, s, s) else "fold"
                        if f > 1:
                            with exact_fp32():
                                ok = torch.allclose(_tiled_fn(layer)(x), _fold_fn(layer)(x), rtol=1e-4, atol=1e-4)
                            checks.append({**base, "op": op, "B": bb, "G": gg, "check": "tiled == fold",
                                           "allclose": bool(ok)})
                    macs = op_cost(op, c, c, 3, s, s, 1, **hyper).macs
                    forms = (("fold", _fold_fn(layer)),) + ((("tiled", _tiled_fn(layer)),) if f > 1 else ())
                    for form, fn in forms:
                        rows.append({**base, "op": op, "B": bb, "G": gg, "form": form, "module_picks": picks,
                                     "macs": macs, **time_calls(fn, x, device, **kw)})
            log(f"  timed gc/tbc/tgc at {c}x{s}x{s} b{b}")
            del x
    experts = []
    b = sizes.expert_batch
    for c, s in sizes.shapes:
        if time.perf_counter() > deadline:
            break
        torch.manual_seed(0)
        x = torch.randn(b, c, s, s, device=device)
        for op, hyper in EXPERT_OPS:
            layer = create_op(op, c, c, 3, 1, **hyper).to(device).eval()
            assert isinstance(layer, (CondConv2d, DynamicConv2d))
            loop = ExpertLoop(layer).eval()
            with torch.inference_mode(), exact_fp32():
                ref, got = layer(x), loop(x)
                ok = bool(torch.allclose(ref, got, rtol=1e-4, atol=1e-4))
                diff = _diff(got, ref)
            batched = time_calls(layer, x, device, **kw)
            looped = time_calls(loop, x, device, **kw)
            experts.append({"op": op, "hyper": hyper, "channels": c, "size": s, "batch": b,
                            "batched": batched, "loop": looped, "speedup": looped["median"] / batched["median"],
                            "speedup_graph": _ratio(_t(looped, "graph"), _t(batched, "graph")),
                            "allclose": ok, "max_abs_diff": diff})
            log(f"  {op}{hyper} {c}x{s}x{s} b{b}: batched {batched['median']:.3f} ms, loop {looped['median']:.3f} ms "
                f"-> {looped['median'] / batched['median']:.1f}x ({'allclose' if ok else 'MISMATCH'})")
        del x
    return {"rows": rows, "checks": checks, "experts": experts, "findings": op_findings(rows, experts, sizes),
            "settings": {"samples": sizes.samples, "min_sample_ms": sizes.min_sample_ms, "factors": list(sizes.factors),
                         "tgc_groups": TGC_GROUPS, "noise": NOISE, "target_speedup": TARGET_SPEEDUP,
                         "tf32_cudnn": torch.backends.cudnn.allow_tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark}}


def _pick(rows: list[dict[str, Any]], **kw: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)


def _t(r: dict[str, Any] | None, clock: str) -> float | None:
    """A timing's median: eager back-to-back calls, or ("graph") the CUDA-graph replay's."""
    if r is None:
        return None
    if clock == "graph":
        g = r.get("graph")
        return g.get("median") if isinstance(g, dict) else None
    return r.get("median")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def op_findings(rows: list[dict[str, Any]], experts: list[dict[str, Any]], sizes: Sizes) -> dict[str, Any]:
    """Per clock (eager calls; CUDA-graph replays, the GPU's own time) and per shape and batch:
    time at the largest factor / time at 1 for gc and for TBC's forms, and TBC / gc at equal
    MACs (B = G); the experts' speed-ups against the target."""
    out: dict[str, Any] = {}
    for clock in ("eager", "graph"):
        if not any(_t(r, clock) for r in rows):
            out[clock] = None
            continue
        cells = []
        for c, s in sizes.shapes:
            for b in sizes.batches:
                at = {"channels": c, "size": s, "batch": b}
                g1 = _t(_pick(rows, op="gc", G=1, **at), clock)
                if g1 is None:
                    continue
                fmax = max(f for f in sizes.factors if c % f == 0)
                t1 = _t(_pick(rows, op="tbc", B=1, form="fold", **at), clock)
                ratios = []
                for f in sizes.factors:
                    r = _ratio(_t(_pick(rows, op="tbc", B=f, form="fold", **at), clock),
                               _t(_pick(rows, op="gc", G=f, **at), clock))
                    if r is not None:
                        ratios.append({"factor": f, "tbc_fold_over_gc": r})
                cell = {**at, "max_factor": fmax,
                        "gc_growth": _ratio(_t(_pick(rows, op="gc", G=fmax, **at), clock), g1),
                        "tbc_fold_growth": _ratio(_t(_pick(rows, op="tbc", B=fmax, form="fold", **at), clock), t1),
                        "tbc_tiled_growth": _ratio(_t(_pick(rows, op="tbc", B=fmax, form="tiled", **at), clock), t1),
                        "tbc_over_gc": ratios}
                cell["gc_grows"] = bool(cell["gc_growth"] is not None and cell["gc_growth"] > NOISE)
                cell["tbc_flat"] = bool(cell["tbc_fold_growth"] is not None and cell["tbc_fold_growth"] <= NOISE)
                cells.append(cell)
        speedups = [_ratio(_t(e["loop"], clock), _t(e["batched"], clock)) for e in experts]
        speedups = [v for v in speedups if v is not None]
        out[clock] = {"tied_vs_gc": cells, "gc_grows": sum(c["gc_grows"] for c in cells),
                      "tbc_flat": sum(c["tbc_flat"] for c in cells), "cells": len(cells),
                      "experts": {"cells": len(speedups), "meet_target": sum(v >= TARGET_SPEEDUP for v in speedups),
                                  "min_speedup": min(speedups, default=None), "max_speedup": max(speedups, default=None),
                                  "allclose": sum(e["allclose"] for e in experts)}}
    return out


# --- output ---------------------------------------------------------------------------------


def _f(v: Any, fmt: str = ".3f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, fmt)


def _ms(s: dict[str, Any] | None) -> str:
    if not s or s.get("median") is None:
        return "n/a"
    return f"{s['median']:.4g} (IQR {s['iqr']:.2g}; 95% [{s['ci95'][0]:.4g}, {s['ci95'][1]:.4g}])"


def _ms_short(s: dict[str, Any] | None) -> str:
    if not s or s.get("median") is None:
        return "–"
    return f"{s['median']:.4g} ± {s['iqr']:.2g}"


def markdown(res: dict[str, Any]) -> str:
    meta = res["meta"]
    out = [
        "# nasconv on a GPU: operators, evaluation, search, operator timings",
        "",
        f"Generated by `benchmarks/gpu_check.py`; do not edit by hand. Command: `{meta['command']}`",
        "",
        f"- date: {meta['date']}; run time {_f(meta.get('run_time_s'), '.0f')} s"
        + (" (**dry run**: tiny sizes, synthetic data; not a measurement)" if meta["dry_run"] else ""),
        f"- device: {meta['device_name']} ({meta['device']}); capability {meta.get('capability')}, "
        f"{meta.get('multiprocessors')} SMs, {_f(meta.get('memory_gib'), '.0f')} GiB; driver {meta.get('driver')}",
        f"- torch {meta['torch']}, CUDA {meta['cuda']}, cuDNN {meta['cudnn']}, Python {meta['python']}; "
        f"host CPU {meta['cpu']} ({meta['cpu_count']} logical CPUs), torch threads {meta['threads']}",
        f"- TF32 (defaults, parts 2-4): matmul {meta['tf32_matmul']}, cuDNN {meta['tf32_cudnn']}; "
        f"cudnn.benchmark {meta['cudnn_benchmark']}; part 1 compares with both off",
        f"- nasconv: {meta['revision']}, imported from {meta.get('nasconv_path')}"
        + (f"; note: {meta['note']}" if meta.get("note") else ""),
        f"- part times (s): {', '.join(f'{k} {v:.0f}' for k, v in meta.get('part_times_s', {}).items())}",
        "- timings: median, IQR = q3 - q1 and the distribution-free 95% interval of the median "
        "(nasconv.stats.median_interval), in ms unless marked",
        "",
    ]
    if meta.get("notes_after_run"):
        out += ["## Notes on this run (written after it, by hand; the figures below are the run's own)", "",
                meta["notes_after_run"].strip(), ""]
    errors = res.get("errors", {})
    if errors:
        out += ["**Parts that failed:** " + "; ".join(f"{k}: {v.strip().splitlines()[-1]}" for k, v in errors.items()),
                ""]

    ops = res.get("ops_check")
    out += ["## 1. Every operator of `resnet50-all` on the device", ""]
    if ops:
        s, st = ops["summary"], ops["settings"]
        # results of the first version (no grad_worst) took mean(y^2), flat after a final BatchNorm
        loss_text = ("mean of the output times a fixed random tensor" if any("grad_worst" in r for r in ops["rows"])
                     else "mean of the squared output [the first version's, see the notes]")
        out += [f"{s['cases']} cases: {s['choices']} operator choices (the space's hyperparameter grid) at shapes "
                f"{', '.join(f'{c}ch {h}x{h} stride {k}' for c, h, k in st['shapes'])}, batch {st['batch']}. "
                f"fp32 ok: {s['fp32_ok']}/{s['cases']}; bf16 ok: {s['bf16_ok']}/{s['cases']}; MACs ok: "
                f"{s['macs_ok']}/{s['cases']}; params ok: {s['params_ok']}/{s['cases']}; errors: {s['errors']}. "
                f"Largest fp32 difference from the CPU relative to the output scale {_f(s['max_rel_diff'], '.1e')} "
                f"(tolerance {st['out_tol']:g}), gradients {_f(s['max_grad_rel_diff'], '.1e')} (tolerance "
                f"{st['grad_tol']:g}); bf16 within {st['bf16_tol']:g} of fp32: {s['bf16_close']}/{s['cases']}."
                + (f" Operators not covered: {', '.join(s['ops_not_covered'])}." if s["ops_not_covered"] else ""),
                "",
                f"fp32 ok = a training step (forward, loss = {loss_text}, "
                "backward, SGD) on the device gives a finite loss, every "
                "parameter's gradient, finite gradients and parameters, and the outputs (eval at batch 1 and "
                f"{st['batch']}, training mode) and gradients equal the CPU's for the same weights (TF32 off); "
                "bf16 ok = the same step under bf16 autocast is finite with every gradient, and the autocast "
                "inference pass is finite; max abs diff = largest |device - CPU| over the fp32 outputs; MACs ok = "
                "`op_cost` equals FlopCounterMode FLOPs / 2 on the device (batch 1 and 2).",
                "",
                "| op | hyper | shape | fp32 ok | bf16 ok | max abs diff vs CPU | rel | grad rel | bf16 rel | MACs ok | params ok |",
                "|---|---|---|:-:|:-:|---:|---:|---:|---:|:-:|:-:|"]
        for r in ops["rows"]:
            hyper = ", ".join(f"{k}={v}" for k, v in r["hyper"].items()) or "–"
            yes = lambda v: "yes" if v else "**NO**"  # noqa: E731
            out.append(f"| {r['op']} | {hyper} | {r['channels']}x{r['size']} s{r['stride']} | {yes(r.get('fp32_ok'))} | "
                       f"{yes(r.get('bf16_ok'))} | {_f(r.get('max_abs_diff'), '.1e')} | {_f(r.get('rel_diff'), '.1e')} | "
                       f"{_f(r.get('grad_rel_diff'), '.1e')} | {_f(r.get('bf16_rel_diff'), '.1e')} | "
                       f"{yes(r.get('macs_ok'))} | {yes(r.get('params_ok'))} |"
                       + (f" {r['error']}" if "error" in r else ""))
        if ops["skipped"]:
            out += ["", f"Skipped: {len(ops['skipped'])} ({'; '.join(sorted({k['why'] for k in ops['skipped']}))})."]
    else:
        out.append("not run")
    out.append("")

    bl = res.get("baseline")
    out += ["## 2. `nasconv.evaluate` of the resnet50 baseline on the device", ""]
    if bl:
        t = bl["train_config"]
        ci = bl.get("accuracy_ci") or [None, None]
        out += [f"GPU proxy: {t['train_images']:,} training images x {t['epochs']} epochs at batch {t['batch_size']}, "
                f"{t['resolution']} px, whole network (max_depth={t['max_depth']}, width_factor={t['width_factor']}, "
                f"small stem {t['small_stem']}; {bl['proxy_params']:,} params, {bl['proxy_macs']:,} MACs per image at "
                f"{t['resolution']} px), AdamW lr {t['lr']} one-cycle; data {bl['data']}.",
                "",
                f"- accuracy **{_f(bl['accuracy'], '.4f')}** (95% Wilson [{_f(ci[0], '.4f')}, {_f(ci[1], '.4f')}], "
                f"SE {_f(bl.get('accuracy_se'), '.4f')}, {bl.get('val_images')} validation images); diverged: "
                f"{bl['diverged']}; validation loss {_f(bl.get('val_loss'), '.4f')}",
                f"- training time {_f(bl['train_time_s'], '.1f')} s for {bl['steps']} steps (validation included); "
                f"per step {_ms(bl['step_ms'])} ms, {_f(bl.get('images_per_s'), ',.0f')} images/s; whole "
                f"evaluate() {_f(bl['eval_wall_s'], '.1f')} s"
                + (f"; peak GPU memory {bl['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in bl else ""),
                ]
        for b, lat in bl["latency"].items():
            out.append(f"- latency of the full network ({bl['params']:,} params, {bl['macs']:,} MACs per image) at "
                       f"{lat['resolution']} px, batch {b}: **{lat['median_ms']:.3f} ms** (IQR {lat['iqr_ms']:.3f}, "
                       f"95% [{lat['ci95_ms'][0]:.3f}, {lat['ci95_ms'][1]:.3f}], {lat['repeats']} runs"
                       f"{', capped' if lat['capped'] else ''}; {lat['source']})"
                       + (f", {lat['images_per_s']:,.0f} images/s" if "images_per_s" in lat else ""))
    else:
        out.append("not run")
    out.append("")

    se = res.get("search")
    out += ["## 3. Inline search: resnet50 within 4gflops, SQLite", ""]
    # results of the script's first version counted each training step's profiler range more than
    # once (host and GPU copies): their per-step busy time and idle share are not shown
    legacy = bool(se) and any("busy_ms_per_step" in p and "step_ranges_found" not in p
                              for p in se.get("profiled", []))
    if se:
        tr = se["eval_config"]["train"]
        out += [f"{se['evaluated']} candidates evaluated (failed {se.get('failed')}, over budget and never built "
                f"{se.get('rejected')}) in {se['search_wall_s']:.1f} s: **{_f(se['candidates_per_min'], '.1f')} "
                f"candidates per minute**; per candidate evaluate() {_ms(se['eval_wall_s'])} s, of which training "
                f"{_ms(se['train_time_s'])} s; driver overhead (sampler, SQLite) "
                f"{_f(se['overhead_s_per_candidate'], '.2f')} s per candidate. Front: {se.get('front_size')} members, "
                f"hypervolume {_f(se.get('hypervolume'), '.3f')}.",
                "",
                f"Proxy: the CPU's reduced copy, pinned ({tr['train_images']:,} images, batch {tr['batch_size']}, {tr['resolution']} px, "
                f"max_depth {tr['max_depth']}, width_factor {tr['width_factor']}); latency at "
                f"{se['eval_config']['latency_resolution'] or 224} px batch {se['eval_config']['latency_batch']} on the device.",
                "",
                f"Training step wall time over all candidates (host clock, steps after the first "
                f"{PROFILE_SKIP if not res['meta']['dry_run'] else 1}): {_ms(se['step_ms_unprofiled'])} ms.",
                "",
                f"**GPU idle share per training step: "
                f"{'see the notes' if legacy else _f(se.get('idle_share'), '.0%')}** (mean over the profiled "
                "candidates) = 1 - GPU busy time per step (union of kernel/memcpy/memset intervals in a torch.profiler "
                "trace of the same training) / the step's wall time in the search (no profiler).",
                "",
                "| candidate (ops per stage) | steps profiled | GPU busy ms/step | wall ms/step (search) | idle share | "
                "wall ms/step (profiled) | idle share (profiled) |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for p in se.get("profiled", []):
            if "error" in p:
                out.append(f"| {', '.join(p['ops'])} | error: {p['error']} | | | | | |")
                continue
            if legacy:
                out.append(f"| {', '.join(p['ops'])} | {p['steps_profiled']} ranges | see notes | "
                           f"{_f(p.get('unprofiled_wall_ms_per_step'), '.2f')} (mean) | see notes | see notes | "
                           f"{_f(p.get('profiled_idle_share'), '.0%')} |")
                continue
            out.append(f"| {', '.join(p['ops'])} | {p['steps_profiled']} | {_ms_short(p['busy_ms'])} | "
                       f"{_ms_short(p.get('unprofiled_wall_ms'))} | {_f(p.get('idle_share'), '.0%')} | "
                       f"{_ms_short(p['profiled_wall_ms'])} | {_f(p.get('profiled_idle_share'), '.0%')} |")
        out += ["", "(busy and wall per step: median ± IQR; idle shares from the means over the profiled steps)", "",
                "| # | ops per stage | accuracy | latency ms | MACs (G) | evaluate s | training s |",
                "|---:|---|---:|---:|---:|---:|---:|"]
        for i, cnd in enumerate(se["candidates"], 1):
            out.append(f"| {i} | {', '.join(cnd['ops'])} | {_f(cnd['accuracy'], '.3f')} | {_f(cnd['latency_ms'], '.3f')} | "
                       f"{cnd['macs'] / 1e9:.2f} | {cnd['eval_wall_s']:.1f} | {cnd['train_time_s']:.1f} |")
    else:
        out.append("not run")
    out.append("")

    ob = res.get("op_bench")
    out += ["## 4. Operator timings on the device", ""]
    if ob:
        fd = ob["findings"]
        out += [f"Per call, ms. **eager**: median ± IQR of {ob['settings']['samples']} samples, each a run of "
                "back-to-back calls between CUDA events (what a PyTorch program sees; at small sizes the host's "
                "launch rate bounds it). **graph**: the same calls captured in a CUDA graph and replayed between "
                "CUDA events (the GPU's own time, no host), median of as many samples. tbc/tgc `fold` = the paper's "
                "form (blocks folded into the batch, one thin conv), `tiled` = a B*G-group conv over the shared "
                "filter repeated B times (same function); `picks` = the form the module uses in inference there. "
                "tgc has G = 2, so tgc B=b has the MACs of gc G=2b; tbc B=b those of gc G=b. The JSON has every "
                "timing's quartiles and 95% interval of the median.",
                ""]
        for clock in ("eager", "graph"):
            f = fd.get(clock)
            if not f:
                continue
            out += [f"**Claim: GC's time grows with groups while TBC's stays flat ({clock}).** GC at its largest G "
                    f"slower than at G=1 (ratio > {NOISE}): {f['gc_grows']}/{f['cells']} shape-batch cells; TBC "
                    f"(fold) at its largest B no slower than at B=1 (ratio <= {NOISE}): {f['tbc_flat']}/{f['cells']}.",
                    "",
                    "| shape | batch | gc G=max / G=1 | tbc fold B=max / B=1 | tbc tiled B=max / B=1 | "
                    "tbc fold / gc at B=G = 1, 2, 4, ... |",
                    "|---|---:|---:|---:|---:|---|"]
            for cell in f["tied_vs_gc"]:
                out.append(f"| {cell['channels']}x{cell['size']}x{cell['size']} | {cell['batch']} | "
                           f"{_f(cell['gc_growth'], '.2f')} | {_f(cell['tbc_fold_growth'], '.2f')} | "
                           f"{_f(cell['tbc_tiled_growth'], '.2f')} | "
                           + ", ".join(f"{r['tbc_fold_over_gc']:.2f}" for r in cell["tbc_over_gc"]) + " |")
            out.append("")

        def both(r: dict[str, Any] | None) -> str:
            if not r:
                return "–"
            g = _t(r, "graph")
            return _ms_short(r) + (f" / {g:.4g}" if g is not None else "")

        out.append("Per shape and batch: eager median ± IQR / graph median (ms per call).")
        for c, s_ in dict.fromkeys((r["channels"], r["size"]) for r in ob["rows"]):
            for b in dict.fromkeys(r["batch"] for r in ob["rows"]):
                cell = [r for r in ob["rows"] if r["channels"] == c and r["size"] == s_ and r["batch"] == b]
                if not cell:
                    continue
                factors = sorted({r["G"] if r["op"] == "gc" else r["B"] for r in cell})
                out += ["", f"### {c}x{s_}x{s_}, batch {b}", "",
                        "| B or G | gc (G) | tbc fold (B) | tbc tiled (B) | tbc picks | tgc fold (B, G=2) | tgc tiled | tgc picks |",
                        "|---:|---:|---:|---:|:-:|---:|---:|:-:|"]
                for fac in factors:
                    g = _pick(cell, op="gc", G=fac)
                    tf, tt = _pick(cell, op="tbc", B=fac, form="fold"), _pick(cell, op="tbc", B=fac, form="tiled")
                    gf, gt = _pick(cell, op="tgc", B=fac, form="fold"), _pick(cell, op="tgc", B=fac, form="tiled")
                    out.append(f"| {fac} | {both(g)} | {both(tf)} | {both(tt)} | {(tf or {}).get('module_picks', '–')} | "
                               f"{both(gf)} | {both(gt)} | {(gf or {}).get('module_picks', '–')} |")
        graph_errors = sorted({r["graph"]["error"] for r in ob["rows"] + [e[k] for e in ob["experts"]
                                                                            for k in ("batched", "loop")]
                               if isinstance(r.get("graph"), dict) and "error" in r["graph"]})
        if graph_errors:
            out += ["", "CUDA-graph capture failed for some timings: " + "; ".join(graph_errors)]
        bad = [k for k in ob["checks"] if not k["allclose"]]
        out += ["", f"tiled == fold (allclose 1e-4, TF32 off): {len(ob['checks']) - len(bad)}/{len(ob['checks'])}"
                + ("" if not bad else "; FAILED: " + ", ".join(f"{k['op']} B={k['B']} {k['channels']}x{k['size']} "
                                                                f"b{k['batch']}" for k in bad)), ""]
        for clock in ("eager", "graph"):
            f = fd.get(clock)
            if not f:
                continue
            ex = f["experts"]
            out.append(f"**Claim: batched CondConv/DynConv >= {TARGET_SPEEDUP:.0f}x faster than a per-sample loop at "
                       f"batch {res['meta']['expert_batch']} ({clock}):** {ex['meet_target']}/{ex['cells']} cells "
                       f"(speed-ups {_f(ex['min_speedup'], '.1f')}x to {_f(ex['max_speedup'], '.1f')}x); outputs "
                       f"allclose {ex['allclose']}/{len(ob['experts'])}.")
            out.append("")
        out += ["| op | hyper | shape | batched ms | loop ms | speed-up (eager) | speed-up (graph) | allclose |",
                "|---|---|---|---:|---:|---:|---:|:-:|"]
        for e in ob["experts"]:
            hyper = ", ".join(f"{k}={v}" for k, v in e["hyper"].items())
            out.append(f"| {e['op']} | {hyper} | {e['channels']}x{e['size']}x{e['size']} | {both(e['batched'])} | "
                       f"{both(e['loop'])} | {e['speedup']:.1f}x | "
                       f"{'n/a' if e.get('speedup_graph') is None else format(e['speedup_graph'], '.1f') + 'x'} | "
                       f"{'yes' if e['allclose'] else '**NO**'} |")
    else:
        out.append("not run")
    return "\n".join(out) + "\n"


def _clean(obj: Any) -> Any:
    """JSON-safe: tuples to lists, non-finite floats to None (recorded as strings)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    return obj


def write_results(out_dir: Path, res: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("gpu_check.json", json.dumps(_clean(res), indent=1) + "\n"), ("gpu_check.md", markdown(res))):
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out_dir / name)


# --- the run --------------------------------------------------------------------------------


def _driver_version() -> str | None:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def metadata(device: torch.device, args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    from _common import cpu_model, git_revision

    meta: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/gpu_check.py" + (" " + shlex.join(args.argv) if args.argv else ""),
        "dry_run": args.dry_run, "device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(), "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "revision": git_revision(), "nasconv_path": str(Path(sys.modules["nasconv"].__file__).parent),
        "note": args.note, "time_limit_s": args.time_limit,
        "expert_batch": sizes.expert_batch, "part_times_s": {},
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        meta.update(device_name=p.name, capability=f"{p.major}.{p.minor}", multiprocessors=p.multi_processor_count,
                    memory_gib=p.total_memory / 2**30, driver=_driver_version())
    else:
        from nasconv.profile import device_name

        meta.update(device_name=device_name(device))
    return meta


def render(json_path: Path, out_dir: Path, notes_file: str | None) -> int:
    """Rewrite gpu_check.md/.json from saved results (see --render)."""
    res = json.loads(json_path.read_text())
    if notes_file:
        res["meta"]["notes_after_run"] = Path(notes_file).read_text()
    ob = res.get("op_bench")
    if ob and ob.get("rows"):
        shapes = tuple(dict.fromkeys((r["channels"], r["size"]) for r in ob["rows"]))
        batches = tuple(dict.fromkeys(r["batch"] for r in ob["rows"]))
        sizes = dataclasses.replace(FULL, shapes=shapes, batches=batches,
                                    factors=tuple(ob["settings"]["factors"]))
        ob["findings"] = op_findings(ob["rows"], ob["experts"], sizes)
    write_results(out_dir, res)
    print(f"wrote {out_dir / 'gpu_check.md'} and {out_dir / 'gpu_check.json'}")
    return 0


PARTS = {"1": "ops_check", "2": "baseline", "3": "search", "4": "op_bench"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    parser.add_argument("--data-dir", default=None, help="folder with Fashion-MNIST's four .gz files")
    parser.add_argument("--device", default=None, help="cuda (default) or cpu; the dry run defaults to cpu")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes, synthetic data, a few operators, 2 search trials (seconds to a minute)")
    parser.add_argument("--time-limit", type=float, default=420.0,
                        help="seconds for the whole run; parts shorten or stop to fit (default 420)")
    parser.add_argument("--parts", default="1,2,3,4", help="which parts, in this order (default 1,2,3,4)")
    parser.add_argument("--ops", default=None, help="part 1: comma-separated operators (their first grid setting), or 'all' "
                        "(every setting of resnet50-all's grid; the default, except in the dry run: "
                        + ",".join(DRY_OPS) + ")")
    parser.add_argument("--note", default=None, help="free text recorded in the results (e.g. the revision)")
    parser.add_argument("--render", metavar="JSON", default=None,
                        help="run nothing: rewrite the Markdown (and JSON) from results this script wrote, "
                        "the operator-timing findings recomputed from their rows")
    parser.add_argument("--notes-file", default=None,
                        help="with --render: Markdown text recorded as meta.notes_after_run and shown at the top")
    args = parser.parse_args(argv)
    if args.render:
        return render(Path(args.render), Path(args.out) if args.out else HERE / "results", args.notes_file)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    sizes = DRY if args.dry_run else FULL
    if args.ops:
        sizes = dataclasses.replace(sizes, ops=None if args.ops == "all" else
                                    tuple(o.strip() for o in args.ops.split(",") if o.strip()))
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; parts: 1, 2, 3, 4")
    device = resolve_device(args.device or ("cpu" if args.dry_run else "cuda"))
    out_dir = Path(args.out) if args.out else HERE / "results"
    t_start = time.perf_counter()
    deadline = t_start + args.time_limit
    res: dict[str, Any] = {"meta": metadata(device, args, sizes), "errors": {}}
    m = res["meta"]
    log(f"device {m['device_name']}, torch {m['torch']}, CUDA {m['cuda']}, cuDNN {m['cudnn']}; parts {parts}")
    for p in parts:
        key = PARTS[p]
        t0 = time.perf_counter()
        log(f"part {p}: {key}")
        try:
            if p == "1":
                # part 1 is cheap: it gets a share of the time, the rest goes on
                res[key] = part_ops(sizes, device, min(deadline, t0 + 0.3 * args.time_limit))
            elif p == "2":
                res[key] = part_baseline(sizes, device, args.data_dir)
            elif p == "3":
                # leave part 4 (when it follows) its minute
                later = parts[parts.index(p) + 1:]
                res[key] = part_search(sizes, device, args.data_dir, deadline - (60.0 if "4" in later else 0.0))
            else:
                res[key] = part_op_bench(sizes, device, min(deadline, t0 + 0.25 * args.time_limit))
        except Exception:
            res["errors"][key] = traceback.format_exc()
            log(f"part {p} failed:\n{res['errors'][key]}")
        m["part_times_s"][key] = time.perf_counter() - t0
        m["run_time_s"] = time.perf_counter() - t_start
        if device.type == "cuda":
            m["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        write_results(out_dir, res)
        log(f"part {p} done in {m['part_times_s'][key]:.1f} s; wrote {out_dir / 'gpu_check.md'}")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
