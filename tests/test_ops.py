"""Contract of every registered operator: shape, exact cost, gradients, channels_last, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasconv.errors import HyperparameterError, UnknownNameError
from nasconv.flops import measure_cost
from nasconv.ops import create_op, get_op, list_ops, op_cost, validate_op
from nasconv.ops.complexity import out_size

# (in_channels, out_channels, kernel_size, height, width, stride)
SHAPES = [
    (32, 32, 3, 8, 8, 1),
    (32, 64, 3, 9, 9, 2),
    (64, 32, 3, 7, 7, 2),
    (64, 64, 3, 6, 5, 1),
    (64, 128, 5, 8, 8, 2),
    (48, 96, 1, 5, 5, 1),
]


def _cases():
    for name in list_ops():
        for hyper in get_op(name).examples:
            for shape in SHAPES:
                c_in, c_out, k, _, _, s = shape
                try:
                    validate_op(name, c_in, c_out, k, s, **hyper)
                except HyperparameterError:
                    continue
                yield pytest.param(name, hyper, shape, id=f"{name}-{hyper}-{shape}")


CASES = list(_cases())


def test_every_operator_has_runnable_cases():
    covered = {c.values[0] for c in CASES}
    assert covered == set(list_ops())
    for name in list_ops():
        n = sum(1 for c in CASES if c.values[0] == name)
        assert n >= 3, f"{name}: only {n} valid grid cases"


@pytest.mark.parametrize("name,hyper,shape", CASES)
def test_shape_and_exact_cost(name, hyper, shape):
    c_in, c_out, k, h, w, s = shape
    layer = create_op(name, c_in, c_out, k, s, **hyper)
    x = torch.randn(2, c_in, h, w)
    layer.eval()
    with torch.no_grad():
        y = layer(x)
    assert y.shape == (2, c_out, out_size(h, k, s), out_size(w, k, s))
    assert torch.isfinite(y).all()
    assert op_cost(name, c_in, c_out, k, h, w, s, **hyper) == measure_cost(layer, (c_in, h, w), batch=2)


@pytest.mark.parametrize("name,hyper,shape", CASES)
def test_gradients_and_channels_last(name, hyper, shape):
    c_in, c_out, k, h, w, s = shape
    layer = create_op(name, c_in, c_out, k, s, **hyper).train()
    x = torch.randn(3, c_in, h, w, requires_grad=True)
    y = layer(x)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in layer.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} gets no gradient"
    layer.eval()
    with torch.no_grad():
        ref = layer(x.detach())
        cl = layer(x.detach().contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list_ops())
def test_default_hyperparameters_build(name):
    layer = create_op(name, 64, 64)
    assert isinstance(layer, nn.Module)
    assert layer(torch.randn(1, 64, 8, 8)).shape == (1, 64, 8, 8)


def test_unknown_operator_lists_known():
    with pytest.raises(UnknownNameError, match="known: standard, gc"):
        create_op("fancyconv", 8, 8)


@pytest.mark.parametrize("name", list_ops())
def test_unknown_hyperparameter(name):
    with pytest.raises(HyperparameterError, match=f"{name}: unknown hyperparameter 'bogus'"):
        create_op(name, 64, 64, bogus=1)


def _with_weight(layer: nn.Module, weight: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], bias=False,
                     padding=weight.shape[2] // 2)
    conv.weight.data.copy_(weight)
    return conv


@pytest.mark.parametrize("stride", [1, 2])
def test_gc_one_group_is_plain_conv(stride):
    layer = create_op("gc", 16, 24, 3, stride, groups=1)
    ref = nn.Conv2d(16, 24, 3, stride, 1, bias=False)
    ref.weight.data.copy_(layer.weight.data)
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(layer(x), ref(x))


@pytest.mark.parametrize("bad", [{"groups": 3}, {"groups": 0}, {"groups": 128}])
def test_gc_bad_groups(bad):
    with pytest.raises(HyperparameterError, match=r"gc: groups: "):
        create_op("gc", 64, 64, **bad)


def test_cost_cache_tells_float_from_int():
    # 2.0 == 2 for a dict key; the operator's rule refuses the float all the same
    op_cost("gc", 64, 64, 3, 8, 8, groups=2)
    with pytest.raises(HyperparameterError, match="gc: groups"):
        op_cost("gc", 64, 64, 3, 8, 8, groups=2.0)
