"""SPConv: formula, reference forward pass, stride-2 sizes, hyperparameter rules."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from nasconv.errors import HyperparameterError
from nasconv.flops import measure_cost
from nasconv.ops import create_op, op_cost
from nasconv.ops.complexity import out_size
from nasconv.ops.spconv import SPConv2d, representative_channels


def test_params_formula_64_to_64():
    # representative 32: 3x3 group conv (groups 2) 64*16*9 + 1x1 64*32; redundant 1x1 64*32; 2 BNs
    expected = 64 * 16 * 9 + 64 * 32 + 64 * 32 + 2 * 2 * 64
    assert op_cost("spconv", 64, 64, 3, 8, 8, ratio=0.5).params == expected == 13568
    assert sum(p.numel() for p in create_op("spconv", 64, 64).parameters()) == expected


def test_macs_formula_stride_2():
    # 15 x 15 -> 8 x 8 on every path
    c = op_cost("spconv", 64, 64, 3, 15, 15, 2, ratio=0.25)
    assert c.macs == 64 * 64 * (8 * 9 + 16 + 48)
    assert c == measure_cost(create_op("spconv", 64, 64, 3, 2, ratio=0.25), (64, 15, 15), batch=2)


def _reference(layer: SPConv2d, x: torch.Tensor) -> torch.Tensor:
    """The paper's forward pass written out with functional ops (eval mode)."""
    c_rep, s, k = layer.rep_channels, layer.stride, layer.kernel_size
    x_rep, x_red = x[:, :c_rep], x[:, c_rep:]
    if s > 1:
        pooled_rep = F.avg_pool2d(x_rep, s, s, ceil_mode=True)
        pooled_red = F.avg_pool2d(x_red, s, s, ceil_mode=True)
    else:
        pooled_rep, pooled_red = x_rep, x_red

    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    rep = bn(F.conv2d(x_rep, layer.gwc.weight, None, s, k // 2, 1, 2)
             + F.conv2d(pooled_rep, layer.pwc.weight), layer.bn_rep)
    red = bn(F.conv2d(pooled_red, layer.conv1x1.weight), layer.bn_red)
    a = rep.mean((2, 3))
    b = red.mean((2, 3))
    wa = a.exp() / (a.exp() + b.exp())
    return rep * wa[:, :, None, None] + red * (1 - wa)[:, :, None, None]


@pytest.mark.parametrize("size", [(8, 8), (9, 9), (7, 10), (1, 1)])
@pytest.mark.parametrize("stride", [1, 2])
def test_matches_reference_odd_and_even_sizes(size, stride):
    h, w = size
    layer = create_op("spconv", 16, 24, 3, stride, ratio=0.5)
    # non-trivial BN statistics so both paths and the fusion weights matter
    with torch.no_grad():
        for bn in (layer.bn_rep, layer.bn_red):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    layer.eval()
    x = torch.randn(3, 16, h, w)
    with torch.no_grad():
        y = layer(x)
        ref = _reference(layer, x)
    assert y.shape == (3, 24, out_size(h, 3, stride), out_size(w, 3, stride))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_stride_2_pool_averages_only_real_pixels():
    # a constant input stays constant after the ceil-mode pool, even at the ragged edge
    layer = create_op("spconv", 8, 8, 3, 2, ratio=0.5).eval()
    x = torch.ones(1, 8, 5, 5)
    assert torch.equal(layer.pool(x), torch.ones(1, 8, 3, 3))


@pytest.mark.parametrize("ratio,c_rep", [(0.125, 8), (1 / 8, 8), (0.25, 16), (0.5, 32), (0.75, 48)])
def test_ratio_forms(ratio, c_rep):
    layer = create_op("spconv", 64, 64, ratio=ratio)
    assert layer.rep_channels == c_rep
    assert layer(torch.randn(1, 64, 6, 6)).shape == (1, 64, 6, 6)


def test_representative_channels_tolerates_float_error():
    assert 100 * 0.29 < 29
    assert representative_channels(100, 0.29) == 29


@pytest.mark.parametrize("kwargs,c_in,c_out,key", [
    ({"ratio": 0}, 64, 64, "ratio"),
    ({"ratio": 0.0}, 64, 64, "ratio"),
    ({"ratio": 1}, 64, 64, "ratio"),
    ({"ratio": 1.5}, 64, 64, "ratio"),
    ({"ratio": -0.5}, 64, 64, "ratio"),
    ({"ratio": "half"}, 64, 64, "ratio"),
    ({"ratio": 1 / 64}, 64, 64, "ratio"),    # c_rep = 1 < 2
    ({"ratio": 0.5}, 6, 64, "ratio"),        # c_rep = 3, odd
    ({"ratio": 0.1}, 16, 64, "ratio"),       # c_rep = 1
    ({"ratio": 0.99}, 8, 64, "ratio"),       # c_rep = 7, odd
    ({"ratio": 0.5}, 64, 63, "out_channels"),
])
def test_bad_hyperparameters(kwargs, c_in, c_out, key):
    with pytest.raises(HyperparameterError, match=rf"^spconv: {key}: "):
        create_op("spconv", c_in, c_out, **kwargs)
    with pytest.raises(HyperparameterError, match=rf"^spconv: {key}: "):
        op_cost("spconv", c_in, c_out, 3, 8, 8, **kwargs)


def test_no_redundant_channel_left():
    create_op("spconv", 3, 4, ratio=0.7)  # 2 representative, 1 redundant: the smallest split
    with pytest.raises(HyperparameterError, match="spconv: ratio: at least one redundant channel"):
        SPConv2d.validate(2, 4, 3, 1, ratio=0.999999999999)
