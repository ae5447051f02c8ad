"""Training precision: native support per device, ``auto`` resolved, refusals, and a training
step of every registered operator in fp32, bf16 and fp16 on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import nasconv.precision as precision_mod
from nasconv.errors import DeviceError, HyperparameterError, UsageError
from nasconv.ops import create_op, get_op, list_ops, validate_op
from nasconv.precision import autocast, cpu_flags, native_precision, resolve_precision
from nasconv.profile import pick_device, resolve_device

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme avx2 avx512f avx512_bf16 amx_bf16 amx_tile avx512_fp16
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes asimdhp bf16 i8mm
"""


def test_cpu_flags_of_x86_and_arm():
    assert {"avx512_bf16", "amx_bf16", "avx512_fp16"} <= cpu_flags(X86)
    assert {"bf16", "asimdhp"} <= cpu_flags(ARM)
    assert cpu_flags("") == frozenset() and cpu_flags("processor : 0\n") == frozenset()


def test_host_flags_agree_with_torch():
    # torch's own (private) checks, where this torch has them: the same answer for this CPU
    flags = precision_mod.host_cpu_flags()
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is not None and "avx512_bf16" not in flags:
        assert not check()
    if check is not None and "avx512_bf16" in flags:
        assert check()


@pytest.mark.parametrize("flags,auto_on_cpu,expected", [
    (frozenset({"avx2"}), True, "fp32"),
    (frozenset({"avx512_bf16"}), True, "bf16"),
    (frozenset({"amx_bf16"}), True, "bf16"),
    (frozenset({"bf16"}), True, "bf16"),  # arm64
    (frozenset({"avx512_bf16"}), False, "fp32"),
])
def test_auto_on_the_cpu(monkeypatch, flags, auto_on_cpu, expected):
    monkeypatch.setattr(precision_mod, "host_cpu_flags", lambda: flags)
    monkeypatch.setattr(precision_mod, "AUTO_BF16_ON_CPU", auto_on_cpu)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp32", "cpu") == "fp32"


def test_explicit_reduced_precision_without_native_support_is_refused(monkeypatch):
    monkeypatch.setattr(precision_mod, "host_cpu_flags", lambda: frozenset({"avx2"}))
    for p in ("bf16", "fp16"):
        with pytest.raises(DeviceError, match=f"--precision {p}: this CPU .* has no native {p}.*--precision fp32"):
            resolve_precision(p, "cpu")
        assert resolve_precision(p, "cpu", allow_emulated=True) == p  # what a benchmark may measure
    monkeypatch.setattr(precision_mod, "host_cpu_flags", lambda: cpu_flags(X86))
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp16", "cpu") == "fp16"


def test_unknown_precision():
    with pytest.raises(UsageError, match="precision must be one of auto, fp32, bf16, fp16, got 'half'"):
        resolve_precision("half", "cpu")


@no_gpu
def test_a_gpu_this_process_cannot_see_gets_bf16():
    # a search driver without a GPU, its Ray workers with one: checked where they train
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("bf16", "cuda:1") == "bf16" and native_precision("fp16", "cuda")


def test_cuda_without_native_bf16_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "device", lambda d: __import__("contextlib").nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla V100")
    assert resolve_precision("auto", "cuda") == "fp32"
    assert resolve_precision("fp16", "cuda") == "fp16"
    with pytest.raises(DeviceError, match=r"--precision bf16: Tesla V100 \(compute capability 7.0\) has no native"):
        resolve_precision("bf16", "cuda")


@no_gpu
def test_device_auto_is_the_cpu_here():
    assert pick_device("auto") == "cpu" and resolve_device("auto") == torch.device("cpu")


def test_device_names(monkeypatch):
    assert pick_device("cuda:3") == "cuda:3"
    for bad in ("tpu", "cuda:x", "cuda:-1", "Auto"):
        with pytest.raises(UsageError, match="unknown device"):
            pick_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto") == "cuda"
    with pytest.raises(DeviceError, match=r"--device cuda:7: only 2 CUDA device\(s\) here \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:7")


# --- a training step of every operator in every precision ------------------------------------


def _small_op(name: str):
    for hyper in get_op(name).examples:
        for c_in, c_out, stride in ((16, 16, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1)):
            try:
                validate_op(name, c_in, c_out, 3, stride, **hyper)
            except HyperparameterError:
                continue
            return create_op(name, c_in, c_out, 3, stride, **hyper), c_in
    raise AssertionError(f"{name}: no example fits the test shapes")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("name", list_ops())
def test_training_step_of_every_operator(name, precision):
    torch.manual_seed(0)
    layer, c_in = _small_op(name)
    layer.train()
    x = torch.randn(4, c_in, 8, 8)
    target = torch.randn(4, 10)
    head = torch.nn.Linear(layer_out := layer(x).shape[1], 10)  # fp32 shapes, once
    scaler = torch.amp.GradScaler("cpu") if precision == "fp16" else None
    with autocast(precision, torch.device("cpu")):
        out = layer(x)
        if precision != "fp32":
            assert out.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision], out.dtype
        loss = F.mse_loss(head(out.mean((2, 3))).float(), target)
    assert out.shape[1] == layer_out and torch.isfinite(loss)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    for pname, p in layer.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} {precision}: no gradient for {pname}"
            assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), pname
