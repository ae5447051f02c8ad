"""CondConv and DynamicConv: formulas, per-sample reference, one conv per batch, temperature."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from nasconv.errors import HyperparameterError
from nasconv.flops import measure_cost
from nasconv.ops import create_op, op_cost, set_temperature
from nasconv.ops.dynamic import DynamicConv2d


def test_condconv_params_formula_64_to_64():
    # 4 experts of 64*64*9, routing Linear(64, 4) with bias
    expected = 4 * 64 * 64 * 9 + 64 * 4 + 4
    assert op_cost("condconv", 64, 64, 3, 8, 8, experts=4).params == expected == 147716
    assert sum(p.numel() for p in create_op("condconv", 64, 64).parameters()) == expected


def test_dynconv_params_formula_64_to_64():
    # hidden = max(64 // 4, 4) = 16: Linear(64, 16) + Linear(16, 4), both with bias
    expected = 4 * 64 * 64 * 9 + (64 * 16 + 16) + (16 * 4 + 4)
    assert op_cost("dynconv", 64, 64, 3, 8, 8).params == expected == 148564
    assert sum(p.numel() for p in create_op("dynconv", 64, 64).parameters()) == expected
    # the hidden width never drops below 4
    assert op_cost("dynconv", 8, 8, 3, 4, 4, experts=2, reduction=16).params == (
        2 * 8 * 8 * 9 + (8 * 4 + 4) + (4 * 2 + 2))


def test_macs_include_routing_and_mixing():
    c_in, c_out, k, h, e = 32, 48, 3, 9, 3
    conv = c_out * c_in * k * k * 5 * 5  # stride 2: 9 -> 5
    assert op_cost("condconv", c_in, c_out, k, h, h, 2, experts=e).macs == c_in * e + e * c_out * c_in * k * k + conv
    layer = create_op("condconv", c_in, c_out, k, 2, experts=e)
    assert op_cost("condconv", c_in, c_out, k, h, h, 2, experts=e) == measure_cost(layer, (c_in, h, h), batch=5)
    layer = create_op("dynconv", c_in, c_out, k, 2, experts=e)
    assert op_cost("dynconv", c_in, c_out, k, h, h, 2, experts=e) == measure_cost(layer, (c_in, h, h), batch=5)


def _mixed_kernels(layer: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Each sample's kernel, computed one sample at a time straight from the papers' formulas."""
    kernels = []
    for sample in x:
        pooled = sample.mean((1, 2))
        if isinstance(layer, DynamicConv2d):
            fc1, fc2 = layer.attention[0], layer.attention[2]
            z = F.linear(torch.relu(F.linear(pooled, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)
            mix = torch.softmax(z / layer.temperature, dim=0)
        else:
            mix = torch.sigmoid(F.linear(pooled, layer.route.weight, layer.route.bias))
        kernels.append(sum(mix[i] * layer.weight[i] for i in range(layer.experts)))
    return kernels


@pytest.mark.parametrize("name,hyper", [
    ("condconv", {"experts": 4}),
    ("condconv", {"experts": 1}),
    ("dynconv", {"experts": 4, "temperature": 1.0}),
    ("dynconv", {"experts": 3, "temperature": 30.0}),
])
@pytest.mark.parametrize("stride", [1, 2])
def test_batched_equals_per_sample_loop(name, hyper, stride):
    layer = create_op(name, 6, 10, 3, stride, **hyper)
    x = torch.randn(5, 6, 9, 8)
    with torch.no_grad():
        y = layer(x)
        ref = torch.cat([F.conv2d(s[None], kern, None, stride, 1)
                         for s, kern in zip(x, _mixed_kernels(layer, x))])
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("temperature", [30.0, 0.5])
def test_dynconv_one_expert_is_plain_conv(stride, temperature):
    layer = create_op("dynconv", 12, 20, 3, stride, experts=1, temperature=temperature)
    ref = nn.Conv2d(12, 20, 3, stride, 1, bias=False)
    ref.weight.data.copy_(layer.weight.data[0])
    x = torch.randn(3, 12, 9, 9)
    torch.testing.assert_close(layer(x), ref(x))


class _CountConvolutions(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket == torch.ops.aten.convolution:
            self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["condconv", "dynconv"])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_one_convolution_per_forward(name, batch):
    layer = create_op(name, 8, 8, 3, 1)
    counter = _CountConvolutions()
    with torch.no_grad(), counter:
        layer(torch.randn(batch, 8, 6, 6))
    assert counter.calls == 1


def test_set_temperature_sharpens_attention_and_counts():
    model = nn.Sequential(create_op("dynconv", 8, 16, experts=4, temperature=30.0), nn.ReLU(),
                          create_op("condconv", 16, 16), nn.Sequential(create_op("dynconv", 16, 8)))
    dyn = model[0]
    with torch.no_grad():
        dyn.attention[2].weight.mul_(20)  # spread the logits so the temperature matters
    pooled = torch.randn(4, 8)
    with torch.no_grad():
        soft = dyn.routing(pooled)
        assert set_temperature(model, 1.0) == 2
        sharp = dyn.routing(pooled)
    assert dyn.temperature == 1.0 and model[3][0].temperature == 1.0
    assert torch.allclose(soft.sum(1), torch.ones(4)) and torch.allclose(sharp.sum(1), torch.ones(4))
    # lower temperature: larger top weight, lower entropy
    assert (sharp.max(1).values > soft.max(1).values).all()
    entropy = lambda p: -(p * p.log()).sum(1)  # noqa: E731
    assert (entropy(sharp) < entropy(soft)).all()
    assert set_temperature(nn.Sequential(nn.Conv2d(3, 3, 3)), 1.0) == 0


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), float("inf"), "hot"])
def test_set_temperature_rejects_bad_values(bad):
    with pytest.raises(HyperparameterError, match="dynconv: temperature: "):
        set_temperature(create_op("dynconv", 8, 8), bad)


@pytest.mark.parametrize("name,kwargs,key", [
    ("condconv", {"experts": 0}, "experts"),
    ("condconv", {"experts": -2}, "experts"),
    ("condconv", {"experts": 2.0}, "experts"),
    ("condconv", {"experts": True}, "experts"),
    ("dynconv", {"experts": 0}, "experts"),
    ("dynconv", {"temperature": 0.0}, "temperature"),
    ("dynconv", {"temperature": -1.0}, "temperature"),
    ("dynconv", {"temperature": float("nan")}, "temperature"),
    ("dynconv", {"reduction": 0}, "reduction"),
])
def test_bad_hyperparameters(name, kwargs, key):
    with pytest.raises(HyperparameterError, match=rf"^{name}: {key}: "):
        create_op(name, 16, 16, **kwargs)
    with pytest.raises(HyperparameterError, match=rf"^{name}: {key}: "):
        op_cost(name, 16, 16, 3, 8, 8, **kwargs)


@pytest.mark.parametrize("name,hyper", [("condconv", {"experts": 4}), ("dynconv", {"experts": 3, "temperature": 2.0})])
@pytest.mark.parametrize("stride", [1, 2])
def test_training_mixed_inputs_form_matches_per_sample_kernels(name, hyper, stride):
    """Training on many channels x small maps takes sum_k conv(a_k x, W_k) instead of building
    per-sample kernels: same outputs and same gradients, still one convolution."""
    torch.manual_seed(0)
    layer = create_op(name, 16, 24, 3, stride, **hyper).train()
    x = torch.randn(6, 16, 3, 3)
    assert layer._mix_inputs(6, 3, 3) and not layer._mix_inputs(1, 3, 3)
    assert not layer._mix_inputs(6, 32, 32)  # big maps keep the per-sample kernels

    def run(mixed_inputs: bool):
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        layer._mix_inputs = (lambda *a: True) if mixed_inputs else (lambda *a: False)
        counter = _CountConvolutions()
        with counter:
            y = layer(xi)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        del layer._mix_inputs
        grads = [xi.grad] + [p.grad.clone() for p in layer.parameters()]
        return y.detach(), grads, counter.calls

    y_mix, g_mix, calls = run(True)
    y_ref, g_ref, _ = run(False)
    assert calls == 1
    torch.testing.assert_close(y_mix, y_ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_mix, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # inference never takes it: the declared cost is the per-sample-kernel form's
        assert not layer._mix_inputs(6, 3, 3)
    assert not layer.eval()._mix_inputs(6, 3, 3)
